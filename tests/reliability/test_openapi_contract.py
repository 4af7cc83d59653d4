"""The OpenAPI schema documents every answer the prediction routes can give, with its body.

Clients generate code from it, and schemathesis checks answers against it: an undocumented
status is a contract break even when the service behaves.
"""

from __future__ import annotations

import pytest

from service.app import create_app
from service.core import Settings

PREDICT_STATUSES = {"200", "400", "401", "404", "408", "413", "415", "422", "500", "503", "504"}
INFER_STATUSES = PREDICT_STATUSES  # 415: an unsupported Content-Encoding
ERROR_REF = "#/components/schemas/ErrorResponse"


@pytest.fixture(scope="module")
def schema() -> dict:
    # The schema is built without starting the lifespan: no model is needed.
    return create_app(Settings(model_dir="unused", device="cpu")).openapi()


def json_schema(response: dict) -> dict:
    return response["content"]["application/json"]["schema"]


@pytest.mark.parametrize(
    ("path", "statuses"),
    [("/predict", PREDICT_STATUSES), ("/v2/models/{name}/infer", INFER_STATUSES)],
)
def test_prediction_routes_document_every_status_with_the_error_body(schema, path, statuses):
    responses = schema["paths"][path]["post"]["responses"]
    assert set(responses) == statuses
    for status in statuses - {"200"}:
        assert json_schema(responses[status]) == {"$ref": ERROR_REF}, status
        assert responses[status]["description"], status
    assert schema["components"]["schemas"]["ErrorResponse"]["required"] == ["error"]


def test_no_route_documents_fastapis_own_validation_body(schema):
    """Validation errors are rendered as {"error": ...}; `detail[]` must not be promised."""
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            documented = operation["responses"].get("422")
            if documented is not None:
                assert json_schema(documented) == {"$ref": ERROR_REF}, (method, path)


def test_predict_documents_both_request_bodies(schema):
    content = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    assert content["multipart/form-data"]["schema"]["required"] == ["file"]


def test_metrics_stays_out_of_the_schema(schema):
    assert "/metrics" not in schema["paths"]


def test_infer_documents_json_and_binary_tensor_bodies(schema):
    operation = schema["paths"]["/v2/models/{name}/infer"]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/json", "application/octet-stream"
    }  # fmt: skip
    assert set(operation["responses"]["200"]["content"]) == {
        "application/json", "application/octet-stream"
    }  # fmt: skip
    headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
    assert headers == ["Inference-Header-Content-Length"]
