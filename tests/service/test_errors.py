"""Bad input always gets a 4xx JSON `{"error": ...}`, and never disturbs the next request."""

from __future__ import annotations

import asyncio
import base64

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from tests.service.helpers import (
    CIFAR_PNGS,
    encode,
    png_claiming,
    serving,
    serving_async,
    settings_for,
    write_cnn_checkpoint,
)

PNG = CIFAR_PNGS[0].read_bytes()
B64 = base64.b64encode(PNG).decode()
BODY_LIMIT = 20_000


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_cnn_checkpoint(root)
    settings = settings_for(root, max_body_bytes=BODY_LIMIT, max_text_bytes=100)
    with serving(create_app(settings)) as test_client:
        yield test_client


def file_part(data: bytes, name: str = "file"):
    return {name: ("x.png", data, "image/png")}


def assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    for word in words:
        assert word in body["error"]


JSON_CASES = {
    "not JSON": (b"{nope", 400, "JSON"),
    "not UTF-8": (b'{"text": "\xff\xfe"}', 400, "UTF-8"),
    "no input": (b"{}", 422, "exactly one"),
    "both inputs": (b'{"image": "aGk=", "text": "hi"}', 422, "exactly one"),
    "image not a string": (b'{"image": 123}', 422, "image"),
    "array body": (b"[1, 2]", 422, ""),
    "unknown field": (b'{"image": "aGk=", "colour": 1}', 422, "colour"),
    "bad action": (f'{{"image": "{B64}", "action": "loop_twice"}}'.encode(), 422, "action"),
    "bad base64": (b'{"image": "@@not base64@@"}', 400, "base64"),
    "base64 of garbage": (b'{"image": "aGVsbG8gd29ybGQ="}', 400, "PNG"),
    "unknown model": (f'{{"image": "{B64}", "model": "mnist"}}'.encode(), 404, "cifar10"),
    "no text model": (b'{"text": "a fine film"}', 404, "no text model"),
    "empty text": (b'{"text": "   "}', 422, "empty"),
    "text too long": (b'{"text": "' + b"a" * 200 + b'"}', 413, "limit"),
    "lone surrogate": (b'{"text": "\\ud800"}', 400, "JSON"),
    "text for an image model": (b'{"text": "hi", "model": "cifar10"}', 400, "image"),
}


@pytest.mark.parametrize("case", JSON_CASES, ids=str)
def test_bad_json_bodies(client, case):
    body, status, word = JSON_CASES[case]
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert_error(r, status, word)


def test_empty_body_is_400(client):
    r = client.post("/predict", content=b"", headers={"content-type": "application/json"})
    assert_error(r, 400, "empty")


@pytest.mark.parametrize("content_type", ["text/plain", "image/png", ""])
def test_unsupported_content_type_is_415(client, content_type):
    r = client.post("/predict", content=PNG, headers={"content-type": content_type})
    assert_error(r, 415, "multipart/form-data", "application/json")


def test_multipart_not_an_image_is_400(client):
    assert_error(client.post("/predict", files=file_part(b"hello")), 400, "PNG")


def test_multipart_empty_file_is_400(client):
    assert_error(client.post("/predict", files=file_part(b"")), 400, "empty")


def test_truncated_image_is_400(client):
    big = encode(Image.effect_noise((64, 64), 50).convert("RGB"))
    assert_error(client.post("/predict", files=file_part(big[: len(big) // 2])), 400, "truncated")


def test_decompression_bomb_is_413(client):
    bomb = png_claiming(100_000, 100_000)
    assert len(bomb) < 200
    assert_error(client.post("/predict", files=file_part(bomb)), 413, "pixels")


def test_body_over_the_limit_by_content_length_is_413(client):
    assert_error(client.post("/predict", files=file_part(b"x" * BODY_LIMIT)), 413, "limit")


def test_streamed_body_over_the_limit_is_413(client):
    # No Content-Length (chunked): the limit is enforced on the bytes actually read.
    chunks = (b'{"image": "' + b"A" * 1000 for _ in range(50))
    r = client.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert_error(r, 413, "limit")


def test_multipart_without_file_field_is_422(client):
    assert_error(client.post("/predict", files=file_part(PNG, "image")), 422, "file")
    r = client.post("/predict", data={"model": "cifar10"}, files=file_part(PNG, "image"))
    assert_error(r, 422, "file")


def test_multipart_file_sent_as_text_is_422(client):
    r = client.post(
        "/predict",
        content=b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc\r\n--b--\r\n',
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert_error(r, 422, "file")


def test_malformed_multipart_is_400(client):
    r = client.post("/predict", content=b"abc", headers={"content-type": "multipart/form-data"})
    assert_error(r, 400, "multipart")


def test_bad_action_in_form_is_422(client):
    assert_error(client.post("/predict", files=file_part(PNG), data={"action": "x"}), 422, "loop")


def test_unknown_routes_and_methods_answer_json(client):
    assert_error(client.get("/nope"), 404)
    assert_error(client.get("/predict"), 405)


def test_framework_validation_errors_use_the_error_shape(tmp_path):
    app = create_app(settings_for(tmp_path))

    @app.get("/typed")
    async def typed(n: int) -> dict:
        return {"n": n}

    with TestClient(app) as test_client:  # no models: the route needs none
        assert_error(test_client.get("/typed?n=abc"), 422, "n")


def test_a_good_request_still_works_after_the_bad_ones(client):
    assert client.post("/predict", files=file_part(PNG)).status_code == 200


@pytest.mark.anyio
async def test_a_body_trickling_past_the_deadline_is_408(model_dir):
    async def slow_body():
        yield b'{"image": "'
        await asyncio.sleep(0.5)
        yield b'"}'

    app = create_app(settings_for(model_dir, request_timeout_ms=200))
    async with serving_async(app) as slow_client:
        r = await slow_client.post(
            "/predict", content=slow_body(), headers={"content-type": "application/json"}
        )
    assert_error(r, 408, "deadline")
