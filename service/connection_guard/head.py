"""Follows a request head (request line, header lines, blank line) as its bytes arrive.

It keeps counts, not bytes: the length of the line in progress, the lines so far, the bytes so
far, so that a limit is enforced on the first byte past it, whatever the client still sends.
Line lengths are without the line's CRLF. The scanner does not judge the syntax: a head within
the limits goes to the HTTP parser, which answers 400 to a malformed one.
"""

from __future__ import annotations

from service.connection_guard.limits import ConnectionLimits


class HeadRefused(Exception):
    """A request head past a limit: the status and message to answer it with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class HeadScanner:
    def __init__(self, limits: ConnectionLimits) -> None:
        self._limits = limits
        # A head that comes whole in one read and is shorter than any line limit cannot pass
        # one: one search finds its end (a CRLF CRLF, maybe past an earlier bare-LF end, which
        # only counts more bytes and lines against it), one count its lines.
        self._short = min(limits.max_request_line_bytes, limits.max_header_line_bytes,
                          limits.max_head_bytes)  # fmt: skip
        self.bytes_seen = 0
        self._lines = 0  # complete lines, the request line included
        self._line_bytes = 0  # of the line in progress, its LF (and CR) included
        self._line_starts_with_cr = False

    def feed(self, data: bytes) -> int | None:
        """Scan the next bytes; returns the offset in `data` just past the blank line that ends
        the head once it is there, None while the head goes on. Raises HeadRefused."""
        if not self.bytes_seen:
            end = data.find(b"\r\n\r\n", 0, self._short) + 4
            if end > 3 and data.count(b"\n", 0, end) <= self._limits.max_headers + 2:
                self.bytes_seen = end
                return end
        pos = 0
        while pos < len(data):
            newline = data.find(b"\n", pos)
            end = len(data) if newline == -1 else newline + 1
            if self._line_bytes == 0:
                self._line_starts_with_cr = data[pos] == 0x0D
            self._line_bytes += end - pos
            self.bytes_seen += end - pos
            self._check_sizes()
            if newline == -1:
                return None
            if self._line_is_blank():
                return end
            self._lines += 1
            self._line_bytes = 0
            if self._lines - 1 > self._limits.max_headers:
                raise HeadRefused(
                    431,
                    f"the request has more than {self._limits.max_headers} header lines "
                    "(DYNALAY_MAX_HEADERS)",
                )
            pos = end
        return None

    def _line_is_blank(self) -> bool:
        return self._line_bytes == 1 or (self._line_bytes == 2 and self._line_starts_with_cr)

    def _check_sizes(self) -> None:
        limits = self._limits
        if self._lines == 0 and self._line_bytes > limits.max_request_line_bytes + 2:
            raise HeadRefused(
                414,
                f"the request line is longer than {limits.max_request_line_bytes} bytes "
                "(DYNALAY_MAX_REQUEST_LINE_BYTES); send long parameters in the body",
            )
        if self._lines > 0 and self._line_bytes > limits.max_header_line_bytes + 2:
            raise HeadRefused(
                431,
                f"a header line is longer than {limits.max_header_line_bytes} bytes "
                "(DYNALAY_MAX_HEADER_LINE_BYTES)",
            )
        if self.bytes_seen > limits.max_head_bytes:
            raise HeadRefused(
                431,
                f"the request head (request line and headers) is larger than "
                f"{limits.max_head_bytes} bytes (DYNALAY_MAX_HEAD_BYTES)",
            )
