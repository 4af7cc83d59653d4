"""HeadScanner: where a request head ends, and which limit a head passes first, however its
bytes are split into reads."""

from __future__ import annotations

import pytest

from service.connection_guard import ConnectionLimits, HeadRefused, HeadScanner

LIMITS = ConnectionLimits(
    max_request_line_bytes=40, max_header_line_bytes=30, max_head_bytes=200, max_headers=5
)


def scan(head: bytes, step: int | None = None) -> int | None:
    """Feed `head` whole or `step` bytes at a time; the end offset in `head`, or None."""
    scanner = HeadScanner(LIMITS)
    step = step or len(head)
    for start in range(0, len(head), step):
        end = scanner.feed(head[start : start + step])
        if end is not None:
            return start + end
    return None


def refusal(head: bytes, step: int | None = None) -> HeadRefused:
    with pytest.raises(HeadRefused) as caught:
        scan(head, step)
    return caught.value


@pytest.mark.parametrize("step", [None, 1, 2, 3, 7])
def test_the_end_of_the_head_is_found_at_any_split(step):
    head = b"GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"
    assert scan(head + b"BODY", step) == len(head)


@pytest.mark.parametrize("step", [None, 1])
def test_bare_lf_line_ends_are_followed_like_h11_does(step):
    head = b"GET /a HTTP/1.1\nHost: x\n\n"
    assert scan(head + b"rest", step) == len(head)


def test_an_unfinished_head_is_not_an_end():
    assert scan(b"GET /a HTTP/1.1\r\nHost: x\r\n") is None
    assert scan(b"GET /a HTTP/1.1\r\nHost: x\r\n\r") is None


@pytest.mark.parametrize("step", [None, 1])
def test_lines_at_their_limits_pass_and_one_byte_more_is_refused(step):
    request_line = b"GET /" + b"a" * 26 + b" HTTP/1.1"  # 40 bytes
    header = b"X: " + b"b" * 27  # 30 bytes
    assert len(request_line) == 40 and len(header) == 30
    ok = request_line + b"\r\n" + header + b"\r\n\r\n"
    assert scan(ok, step) == len(ok)
    long_line = refusal(b"GET /a" + request_line + b"\r\n\r\n", step)
    assert long_line.status == 414 and "DYNALAY_MAX_REQUEST_LINE_BYTES" in long_line.message
    long_header = refusal(request_line + b"\r\n" + header + b"c\r\n\r\n", step)
    assert long_header.status == 431 and "DYNALAY_MAX_HEADER_LINE_BYTES" in long_header.message


def test_a_line_that_never_ends_is_refused_as_soon_as_it_passes_the_limit():
    scanner = HeadScanner(LIMITS)
    assert scanner.feed(b"GET / HTTP/1.1\r\nX-Big: ") is None
    with pytest.raises(HeadRefused) as caught:
        scanner.feed(b"a" * 1_000_000)
    assert caught.value.status == 431
    assert scanner.bytes_seen < 1_000_100  # counted, never kept


def test_too_many_header_lines():
    five = b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 5 + b"\r\n"
    assert scan(five) == len(five)
    six = refusal(b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 6 + b"\r\n")
    assert six.status == 431 and "more than 5 header lines" in six.message


def test_the_whole_head_has_its_own_limit():
    lines = b"".join(b"H%d: " % i + b"v" * 40 + b"\r\n" for i in range(5))  # 5 × ~45 bytes
    wide = ConnectionLimits(max_header_line_bytes=64, max_head_bytes=200, max_headers=50)
    scanner = HeadScanner(wide)
    with pytest.raises(HeadRefused) as caught:
        scanner.feed(b"GET / HTTP/1.1\r\n" + lines + b"\r\n")
    assert caught.value.status == 431 and "DYNALAY_MAX_HEAD_BYTES" in caught.value.message
