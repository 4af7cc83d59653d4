"""schemathesis against the OpenAPI schema, in process (ASGI), with a bounded number of cases.

Every operation but /metrics (plain text, outside the schema) gets schema-valid and
schema-violating requests. Checks: no 5xx, statuses / content types / bodies / headers as
documented, schema violations refused with a 4xx, and no internals in any error body. Each
call has a time limit, so a hang fails the case instead of stalling CI.
"""

from __future__ import annotations

import os
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from service.app import create_app
from service.core import Settings
from service.predict import is_prediction_path
from tests.fixtures.hostile.make_corpus import BODY_LIMIT, MAX_BATCH, REAL_PNG, TEXT_LIMIT
from tests.reliability import figures
from tests.reliability.clean_errors import problems
from tests.service.helpers import settings_for

# Cases per operation; DYNALAY_FUZZ_EXAMPLES raises it for a longer local run.
MAX_EXAMPLES = int(os.environ.get("DYNALAY_FUZZ_EXAMPLES", "40"))
CALL_TIMEOUT_S = 10.0


def excluded_checks(path: str) -> list:
    """Built-in checks that do not apply to this route.

    Schema-valid but semantically wrong input (random base64 is no image) is refused with a 4xx
    on purpose: the schema cannot say "these bytes decode to an image", so schemathesis's
    "valid data must be accepted" check does not hold for prediction routes. Readiness
    routes answer a documented 503 for "not ready" (an unknown model's readiness included);
    for them `problems()` still refuses every other 5xx.
    """
    if is_prediction_path(path):
        return [positive_data_acceptance]
    return [positive_data_acceptance, not_a_server_error]


@pytest.fixture
def api_schema(two_model_repo) -> schemathesis.BaseSchema:
    """A fresh app per test: schemathesis' pytest plugin ends ASGI lifespans at each teardown."""
    app = create_app(
        settings_for(
            two_model_repo,
            max_body_bytes=BODY_LIMIT,
            max_text_bytes=TEXT_LIMIT,
            max_batch_size=MAX_BATCH,
        )
    )
    # Loading the schema starts the app's lifespan on schemathesis' own event loop thread.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    wait_ready(app)
    return schema.exclude(path_regex="^/metrics")


def wait_ready(app, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    with asgi.get_client(app) as client:
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the fuzzed app did not become ready"
            time.sleep(0.02)


def assert_still_serving(app) -> None:
    """After the fuzzing, a good request is still answered."""
    with asgi.get_client(app) as client:
        files = {"file": ("cat.png", REAL_PNG, "image/png")}
        answer = client.post("/predict", files=files, timeout=CALL_TIMEOUT_S)
        assert answer.status_code == 200, answer.text
        assert client.get("/readyz").status_code == 200


def vanishes_on_the_wire(case: schemathesis.Case) -> bool:
    """A multipart field made an empty array is sent as no part at all: valid as sent."""
    body = case.body if case.media_type == "multipart/form-data" else None
    return isinstance(body, dict) and any(value == [] for value in body.values())


def cases_to_run() -> list[tuple[str, str, GenerationMode]]:
    """(path, method, mode) per documented operation; building the schema needs no model.

    Negative cases only where there is something to make invalid: a body (every parameter
    here is a free-form string path segment, which no value violates).
    """
    paths = create_app(Settings(model_dir="unused", device="cpu")).openapi()["paths"]
    runs = []
    for path, operations in paths.items():
        for method, operation in operations.items():
            runs.append((path, method.upper(), GenerationMode.POSITIVE))
            if "requestBody" in operation:
                runs.append((path, method.upper(), GenerationMode.NEGATIVE))
    return runs


# schemathesis' own pytest integration breaks on pytest 9 (`Function._nodeid`), so each
# operation's Hypothesis strategy is driven directly: same cases, same checks.
@pytest.mark.parametrize(("path", "method", "mode"), cases_to_run())
def test_fuzzed_requests_get_documented_answers_and_never_a_5xx(api_schema, path, method, mode):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,  # the per-call timeout bounds each case instead
        derandomize=True,  # the same cases on every CI run
        database=None,  # no .hypothesis directory in the checkout
        phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call(timeout=CALL_TIMEOUT_S)
        figures.add("schemathesis cases", 1)
        excluded = excluded_checks(path)
        if vanishes_on_the_wire(case):
            excluded = [*excluded, negative_data_rejection]
        case.validate_response(response, excluded_checks=excluded)
        found = problems(response, error_body=is_prediction_path(path))
        assert found == [], (response.status_code, response.text[:300])

    check()
    assert_still_serving(api_schema.app)
