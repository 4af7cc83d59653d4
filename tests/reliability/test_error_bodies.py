"""Errors nobody planned for still leave as `{"error": ...}` without internals.

The planned ones (bad input, limits, faults) are covered by the corpus and the fuzzing; here: an
unexpected exception inside a handler, unknown routes and wrong methods.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.reliability.clean_errors import problems
from tests.reliability.models import write_cnn
from tests.service.helpers import CIFAR_PNGS, settings_for, wait_ready

PNG = CIFAR_PNGS[0].read_bytes()


@pytest.fixture
def client(tmp_path):
    write_cnn(tmp_path)
    # Starlette re-raises an unhandled exception after answering (for the server's log);
    # the client must see the answer, as a real one would.
    app = create_app(settings_for(tmp_path))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        yield test_client


def test_an_unexpected_exception_is_a_clean_500(client, monkeypatch):
    async def explode(*_args, **_kwargs):
        raise FileNotFoundError(2, "No such file", "/work/secret/weights.bin")

    monkeypatch.setattr("service.predict.classification._preprocess", explode)
    answer = client.post("/predict", files={"file": ("x.png", PNG)})
    assert answer.status_code == 500
    assert problems(answer) == ["server error 500"]  # and nothing else: no path, no trace
    assert "secret" not in answer.text
    monkeypatch.undo()
    assert client.post("/predict", files={"file": ("x.png", PNG)}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nope", 404), ("DELETE", "/predict", 405), ("GET", "/predict", 405)],
)
def test_unknown_routes_and_methods_get_json_errors(client, method, path, status):
    answer = client.request(method, path)
    assert answer.status_code == status
    assert problems(answer) == []
    if status == 405:
        assert "POST" in answer.headers["allow"]
