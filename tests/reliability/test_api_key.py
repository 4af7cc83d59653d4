"""The API key: compared in constant time, every wrong form refused with 401, never echoed.

Constant time is checked on the code (the comparison is `hmac.compare_digest` on bytes and
nothing else touches the key): a timing measurement on a shared 2-core machine could not tell
a few nanoseconds per byte from noise, so it would prove nothing.
"""

from __future__ import annotations

import ast
import inspect

import pytest

from service.app import create_app
from service.predict import check_api_key
from tests.reliability.clean_errors import problems
from tests.reliability.models import write_cnn
from tests.service.helpers import CIFAR_PNGS, serving, settings_for

KEY = "k3y-for-tests-0123456789"
PNG = CIFAR_PNGS[0].read_bytes()


def test_the_key_is_compared_with_compare_digest_only():
    tree = ast.parse(inspect.getsource(check_api_key))
    calls = [ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assert "hmac.compare_digest" in calls
    # `is None` checks are fine (no content is compared); any other comparison is not.
    compared = {
        ast.unparse(side)
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and not all(isinstance(op, ast.Is | ast.IsNot) for op in node.ops)
        for side in (node.left, *node.comparators)
    }
    assert not compared & {"expected", "offered"}, compared  # no ==, !=, in, <…
    assert not any(c.endswith(("startswith", "endswith", "find")) for c in calls)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth")
    write_cnn(root)
    with serving(create_app(settings_for(root, api_key=KEY))) as test_client:
        yield test_client


WRONG = {
    "no key": {},
    "same length": {"X-API-Key": KEY[:-1] + "X"},
    "shorter": {"X-API-Key": KEY[:-1]},
    "longer": {"X-API-Key": KEY + "0"},
    "empty": {"X-API-Key": ""},
    "empty bearer": {"Authorization": "Bearer "},
    "basic scheme": {"Authorization": f"Basic {KEY}"},
    "non-ASCII bytes": {"X-API-Key": "clé-ünïcode".encode()},
    "NUL byte": {"X-API-Key": KEY + "\x00"},
}


@pytest.mark.parametrize("headers", WRONG.values(), ids=WRONG.keys())
def test_every_wrong_key_gets_401_without_echoing_keys(client, headers):
    answer = client.post("/predict", files={"file": ("x.png", PNG)}, headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert problems(answer) == []
    assert KEY not in answer.text and KEY[:8] not in answer.text


@pytest.mark.parametrize(
    "headers",
    [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}, {"Authorization": f"bearer {KEY}"}],
    ids=["x-api-key", "bearer", "lower-case scheme"],
)
def test_the_right_key_is_accepted(client, headers):
    answer = client.post("/predict", files={"file": ("x.png", PNG)}, headers=headers)
    assert answer.status_code == 200, answer.text
