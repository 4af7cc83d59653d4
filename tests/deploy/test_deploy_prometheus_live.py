"""Integration: the real Prometheus server scrapes the real service (uvicorn, `python -m service`)
on loopback; what we send comes back through Prometheus' HTTP API.

Prometheus runs with a test config (1 s scrapes and rule evaluations) and the stack's own rules
file, so the alert rules are also evaluated against live data.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.deploy_helpers import (
    READY_TIMEOUT_S,
    REPO,
    RULES,
    TINY_MODEL,
    alert_expressions,
    as_promql,
    dashboard_queries,
    fixture_images,
    import_service_app,
    tool,
)

SCRAPE_TIMEOUT_S = 30  # for a value to travel service → scrape → query
# Panels whose series exist only once some prediction looped; a random tiny agent may not loop.
NEEDS_LOOPS = ("Fixed-point iterations",)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], object], timeout: float, logs: Path | None = None):
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError) as exc:
            last_error = exc
        time.sleep(0.25)
    tail = logs.read_text()[-3000:] if logs and logs.exists() else ""
    pytest.fail(f"timed out after {timeout} s waiting for {what} ({last_error!r})\n{tail}")


def start(cmd: list[str], log: Path, **kw) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw
        )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def service_url(tiny_model_dir, tmp_path_factory) -> Iterator[str]:
    """`python -m service` (uvicorn) on a free loopback port, serving the tiny checkpoint."""
    tool("prometheus")  # skip (or fail in CI) before paying for a service start-up
    import_service_app()  # skip cleanly while the service does not exist
    port = free_port()
    env = {
        **os.environ,
        "DYNALAY_HOST": "127.0.0.1",
        "DYNALAY_PORT": str(port),
        "DYNALAY_GRPC_PORT": "0",
        "DYNALAY_MODEL_DIR": str(tiny_model_dir),
        "DYNALAY_DEVICE": "cpu",
        "DYNALAY_LOG_LEVEL": "warning",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("DYNALAY_API_KEY", None)
    log = tmp_path_factory.mktemp("service") / "service.log"
    proc = start([sys.executable, "-m", "service"], log, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, f"service exited ({proc.returncode}):\n{log.read_text()}"
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200

        wait_for("the service's /readyz", ready, READY_TIMEOUT_S, log)
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def prometheus_url(service_url, tmp_path_factory) -> Iterator[str]:
    """The real Prometheus server scraping the service every second, with the stack's rules."""
    binary = tool("prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    config = work / "prometheus.yml"
    target = service_url.removeprefix("http://")
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "evaluation_interval": "1s",
                },
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {"job_name": "dynalay", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    port = free_port()
    cmd = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    log = work / "prometheus.log"
    proc = start(cmd, log, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, f"prometheus exited ({proc.returncode}):\n{log.read_text()}"
            return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200

        wait_for("Prometheus /-/ready", ready, 30, log)
        wait_for("a first successful scrape", lambda: query(url, 'up{job="dynalay"}') == [1.0], 30)
        yield url
    finally:
        stop(proc)


def query_raw(prometheus: str, promql: str) -> dict:
    r = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{promql!r}: {body}"
    return body["data"]


def query(prometheus: str, promql: str) -> list[float]:
    """Values of an instant-vector query, sorted."""
    return sorted(float(s["value"][1]) for s in query_raw(prometheus, promql)["result"])


@pytest.fixture(scope="module")
def sent(service_url, prometheus_url) -> dict[str, int]:
    """Real predictions (every fixture image) plus a 400 and a 404; returns counts by status."""
    counts: dict[str, int] = {}
    with httpx.Client(base_url=service_url, timeout=30) as client:
        for image in fixture_images():
            files = {"file": (image.name, image.read_bytes(), "image/png")}
            r = client.post("/predict", files=files, data={"model": TINY_MODEL})
            assert r.status_code == 200, r.text
            counts["200"] = counts.get("200", 0) + 1
        bad = client.post("/predict", files={"file": ("x.png", b"not an image", "image/png")})
        assert bad.status_code == 400, bad.text
        image = fixture_images()[0]
        files = {"file": (image.name, image.read_bytes(), "image/png")}
        unknown = client.post("/predict", files=files, data={"model": "no-such-model"})
        assert unknown.status_code == 404, unknown.text
    return {**counts, "400": 1, "404": 1}


def test_requests_and_actions_come_back_through_prometheus(prometheus_url, sent):
    answered = sent["200"]
    requests = f'sum(dynalay_requests_total{{job="dynalay", model="{TINY_MODEL}", status="200"}})'
    wait_for(
        f"{requests} == {answered}",
        lambda: query(prometheus_url, requests) == [answered],
        SCRAPE_TIMEOUT_S,
    )
    actions = f'sum(dynalay_actions_total{{job="dynalay", model="{TINY_MODEL}"}})'
    assert query(prometheus_url, actions) == [answered]
    by_status = query_raw(prometheus_url, 'sum by (status) (dynalay_requests_total{job="dynalay"})')
    assert {s["metric"]["status"]: float(s["value"][1]) for s in by_status["result"]} == sent
    # Every answer, errors included, is timed (its `model` label may be "none" for errors).
    latency = 'sum(dynalay_request_duration_seconds_count{job="dynalay"})'
    assert query(prometheus_url, latency) == [sum(sent.values())]
    evaluations = f'sum(dynalay_layer_evaluations_count{{model="{TINY_MODEL}"}})'
    assert query(prometheus_url, evaluations) == [answered]
    assert query(prometheus_url, f'dynalay_model_info{{model="{TINY_MODEL}"}}') == [1.0]


def test_every_dashboard_query_runs_in_prometheus(prometheus_url, sent):
    """Each panel query is valid PromQL for the real server and, once two scrapes have seen the
    predictions, returns data (except panels that need a looped prediction)."""
    requests = f'sum(dynalay_requests_total{{model="{TINY_MODEL}", status="200"}})'
    wait_for("the predictions", lambda: query(prometheus_url, requests) == [sent["200"]], 30)
    time.sleep(2.5)  # two more scrapes, so rate() over the histograms has two points

    panel_queries = [(w, e) for w, e in dashboard_queries() if w.startswith("panel ")]
    assert len(panel_queries) >= 20

    def empty_panels() -> list[str]:
        return [
            where
            for where, expr in panel_queries
            if not any(needs in where for needs in NEEDS_LOOPS)
            and not query_raw(prometheus_url, as_promql(expr))["result"]
        ]

    wait_for("data in every panel", lambda: not empty_panels(), SCRAPE_TIMEOUT_S)
    for _where, expr in panel_queries:  # the loop-only ones at least parse and run
        query_raw(prometheus_url, as_promql(expr))

    r = httpx.get(
        f"{prometheus_url}/api/v1/label/model/values",
        params={"match[]": "dynalay_model_info"},  # the $model variable's label_values()
        timeout=5,
    )
    assert TINY_MODEL in r.json()["data"]


def test_alert_rules_evaluate_cleanly_and_stay_quiet(prometheus_url, sent):
    """The stack's rules load into the real server, evaluate without error on live data, and
    no alert is pending or firing for a healthy service."""

    def groups() -> list[dict]:
        body = httpx.get(f"{prometheus_url}/api/v1/rules", timeout=5).json()
        rules = [rule for group in body["data"]["groups"] for rule in group["rules"]]
        evaluated = all(rule["lastEvaluation"] > "2000" for rule in rules)
        return rules if rules and evaluated else []

    rules = wait_for("a rule evaluation", groups, SCRAPE_TIMEOUT_S)
    assert {rule["name"] for rule in rules} == {name[5:] for name, _ in alert_expressions()}
    for rule in rules:
        assert rule["health"] == "ok", rule
        assert rule["state"] == "inactive", rule
