"""The service on a real local Ray cluster, started as `make serve-ray` starts it
(`python -m service.ray`), with the embedded CIFAR-10 checkpoint and two replicas.

One cluster for the whole module (starting one costs ~20 s on 2 cores), the tests in order:
answers match the single-process server's; Ray's metrics URL counts every answer of every
replica (and the real Prometheus, scraping it with the repo's dynalay-ray job, feeds every
dashboard query); a replica SIGKILLed under load is replaced, its in-flight requests get 503 +
Retry-After and no other request fails or hangs; SIGTERM stops it all and leaves no Ray process.
The cluster's processes are found by its private temp dir; the finalizer kills whatever of it
is left, so a failing test never leaves a cluster behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from tests.deploy.deploy_helpers import (
    PROMETHEUS_CONFIG,
    as_promql,
    dashboard_queries,
    tool,
)
from tests.service.helpers import CIFAR_PNGS, serving, settings_for

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO / "checkpoints" / "cifar10"
# cluster + two replicas importing torch and warming up: ~20 s idle, minutes busy
READY_TIMEOUT_S = 240
REPLACED_TIMEOUT_S = 90
METRICS_TIMEOUT_S = 30  # bridge (1 s) + Ray's report interval (0.5 s here) + slack
COMPARED = ("model", "model_version", "label", "class_index", "action", "looped_layers")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], object], timeout_s: float, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    pytest.fail(f"timed out after {timeout_s} s waiting for {what} ({last!r})\n{tail}")


def cluster_processes(temp_dir: str) -> dict[int, str]:
    """pid -> command line of every process of the cluster whose session files are in temp_dir
    (raylet, gcs_server, the agents and workers all name their session directory)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if temp_dir in cmdline:
            found[int(entry.name)] = cmdline
    return found


def replica_pids(launcher: subprocess.Popen) -> list[int]:
    """Serve replicas of this cluster: Ray names their processes `ray::ServeReplica:app:dep`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        session = int(stat.rsplit(")", 1)[1].split()[3])  # the launcher's: it started a session
        if cmdline.startswith(b"ray::ServeReplica") and session == launcher.pid:
            pids.append(int(entry.name))
    return sorted(pids)


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP listener on `port` (from /proc/net/tcp, IPv4 only)."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        ip_hex, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            addresses.add(socket.inet_ntoa(bytes.fromhex(ip_hex)[::-1]))
    return addresses


@dataclass
class RayService:
    url: str
    metrics_url: str
    metrics_port: int
    launcher: subprocess.Popen
    log: Path
    temp_dir: str
    sent: Counter  # answers by status the tests got, for the metrics checks

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def model_repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray-models")
    shutil.copytree(CHECKPOINT, root / "cifar10")
    return root


def launch(model_repo: Path, log: Path) -> RayService:
    """`python -m service.ray` on free loopback ports with a private temp dir."""
    # Ray's unix sockets live under the temp dir: keep its path short (sun_path is 108 bytes).
    temp_dir = tempfile.mkdtemp(prefix="dlray-", dir="/tmp")
    port, metrics_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DYNALAY_", "RAY_"))},
        "PYTHONPATH": str(REPO),  # the replicas import this checkout's service
        "DYNALAY_HOST": "127.0.0.1",
        "DYNALAY_PORT": str(port),
        "DYNALAY_MODEL_DIR": str(model_repo),
        "DYNALAY_DEVICE": "cpu",
        # The single-process reference runs at the suite's exact fp32 NCHW (tests/conftest.py).
        "DYNALAY_PRECISION": "fp32",
        "DYNALAY_LAYOUT": "nchw",
        "DYNALAY_MAX_QUEUE_DELAY_MS": "2",
        "DYNALAY_SHUTDOWN_GRACE_S": "5",
        "DYNALAY_RAY_REPLICAS": "2",
        "DYNALAY_RAY_NUM_CLUSTER_CPUS": "2",
        "DYNALAY_RAY_NUM_CPUS": "1",
        "DYNALAY_RAY_METRICS_PORT": str(metrics_port),
        "DYNALAY_RAY_METRICS_REPORT_INTERVAL_MS": "500",
        "DYNALAY_RAY_GRACEFUL_SHUTDOWN_S": "10",
        "DYNALAY_RAY_TEMP_DIR": temp_dir,
        "OMP_NUM_THREADS": "1",
    }
    with log.open("wb") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "service.ray"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,  # its own process group: the cluster's processes join it
        )
    url = f"http://127.0.0.1:{port}"
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    return RayService(url, metrics_url, metrics_port, launcher, log, temp_dir, Counter())


@pytest.fixture(scope="module")
def ray_service(model_repo, tmp_path_factory) -> Iterator[RayService]:
    service = launch(model_repo, tmp_path_factory.mktemp("ray-launcher") / "launcher.log")
    try:

        def ready() -> bool:
            assert service.launcher.poll() is None, (
                f"launcher exited {service.launcher.returncode}:\n{service.log_tail()}"
            )
            return httpx.get(f"{service.url}/readyz", timeout=5).status_code == 200

        wait_for("both replicas warm (/readyz 200)", ready, READY_TIMEOUT_S, service.log)
        yield service
    finally:
        _tear_down(service)


def _tear_down(service: RayService) -> None:
    """SIGTERM first (the graceful path); then SIGKILL whatever of the cluster is left."""
    launcher = service.launcher
    if launcher.poll() is None:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait(timeout=30)
    for pid in cluster_processes(service.temp_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(service.temp_dir, ignore_errors=True)


def predict(client: httpx.Client, image: Path, action: str | None = None) -> httpx.Response:
    data = {"action": action} if action else {}
    files = {"file": (image.name, image.read_bytes(), "image/png")}
    return client.post("/predict", files=files, data=data)


# Half the answers forced through a loop: the embedded agent keeps every image straight, and
# the loop panels (iterations, time to the looped answer) need looped answers to show data.
ROUND_ACTIONS = (None, "loop_l1", None, "loop_l1")


# --------------------------------------------------------------------------------------------


def oip_body(image: Path) -> dict:
    data = base64.b64encode(image.read_bytes()).decode()
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [data]}]}


def test_replicas_answer_like_the_single_process_server(ray_service, model_repo):
    with serving(create_app(settings_for(model_repo))) as single:
        reference = {
            (image, action): predict(single, image, action).json()
            for image in CIFAR_PNGS
            for action in set(ROUND_ACTIONS)
        }
        reference_models = single.get("/models").json()
        bad = single.post("/predict", files={"file": ("x.png", b"not an image", "image/png")})
        unknown = single.post("/predict", json={"image": "AAAA", "model": "nope"})
        reference_oip = single.post("/v2/models/cifar10/infer", json=oip_body(CIFAR_PNGS[0]))

    with httpx.Client(base_url=ray_service.url, timeout=60) as client:
        assert client.get("/models").json() == reference_models
        assert client.get("/healthz").json() == {"status": "ok"}
        for action in ROUND_ACTIONS:  # 24 answers: Serve spreads them over both replicas
            for image in CIFAR_PNGS:
                answer = predict(client, image, action)
                assert answer.status_code == 200, answer.text
                ray_service.sent["200"] += 1
                got, want = answer.json(), reference[(image, action)]
                assert {k: got.get(k) for k in COMPARED} == {k: want.get(k) for k in COMPARED}
                for label, p in want["probabilities"].items():
                    assert got["probabilities"][label] == pytest.approx(p, abs=1e-5)
        ray_bad = client.post("/predict", files={"file": ("x.png", b"not an image", "image/png")})
        assert (ray_bad.status_code, ray_bad.json()) == (bad.status_code, bad.json())
        ray_unknown = client.post("/predict", json={"image": "AAAA", "model": "nope"})
        assert (ray_unknown.status_code, ray_unknown.json()) == (
            unknown.status_code,
            unknown.json(),
        )
        ray_service.sent[str(bad.status_code)] += 1
        ray_service.sent[str(unknown.status_code)] += 1

        # The same answer through the Open Inference Protocol route.
        oip = client.post("/v2/models/cifar10/infer", json=oip_body(CIFAR_PNGS[0]))
        assert oip.status_code == 200 == reference_oip.status_code, oip.text
        ray_service.sent["200"] += 1
        assert oip_outputs(oip.json()) == oip_outputs(reference_oip.json())

    # Loopback only: the service port and the metrics port listen on 127.0.0.1 alone.
    assert listening_addresses(int(ray_service.url.rsplit(":", 1)[1])) == {"127.0.0.1"}
    assert listening_addresses(ray_service.metrics_port) == {"127.0.0.1"}


def oip_outputs(body: dict) -> dict:
    """name -> data, floats rounded (two processes' kernels differ in the last bits)."""
    return {
        o["name"]: [round(v, 4) if isinstance(v, float) else v for v in o["data"]]
        for o in body["outputs"]
    }


def scrape(metrics_url: str) -> dict[str, list]:
    """family name -> samples of Ray's metrics endpoint (its ray_dynalay_* families)."""
    text = httpx.get(metrics_url, timeout=10).text
    return {
        f.name: f.samples
        for f in text_string_to_metric_families(text)
        if f.name.startswith("ray_dynalay_")
    }


def answers_by_status(families: dict[str, list]) -> Counter:
    totals: Counter = Counter()
    for sample in families.get("ray_dynalay_requests", []):
        if sample.name.endswith("_total"):
            totals[sample.labels["status"]] += int(sample.value)
    return totals


def test_the_metrics_url_counts_every_answer_of_every_replica(ray_service):
    sent = dict(ray_service.sent)
    families = wait_for(
        f"answers by status at the metrics URL == {sent}",
        lambda: (f := scrape(ray_service.metrics_url)) and answers_by_status(f) == sent and f,
        METRICS_TIMEOUT_S,
        ray_service.log,
    )
    answered_by = {
        s.labels["WorkerId"]
        for s in families["ray_dynalay_requests"]
        if s.labels["status"] == "200" and s.value > 0
    }
    assert len(answered_by) == 2, "both replicas answered and report their own series"
    models = [s for s in families["ray_dynalay_model_info"] if s.value == 1]
    assert {s.labels["WorkerId"] for s in models} == answered_by
    # The histograms come as exact counters of their buckets, count and sum.
    counts = families["ray_dynalay_request_duration_seconds_count"]
    assert sum(s.value for s in counts if s.name.endswith("_total")) == sum(sent.values())
    infinite = [
        s
        for s in families["ray_dynalay_request_duration_seconds_bucket"]
        if s.labels.get("le") == "+Inf"
    ]
    assert sum(s.value for s in infinite) == sum(sent.values())
    actions = sum(s.value for s in families["ray_dynalay_actions"] if s.name.endswith("_total"))
    assert actions == sent["200"]


@pytest.fixture(scope="module")
def prometheus_url(ray_service, tmp_path_factory) -> Iterator[str]:
    """The real Prometheus scraping Ray's endpoint with the repo's own dynalay-ray job."""
    binary = tool("prometheus")
    jobs = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    job = next(j for j in jobs if j["job_name"] == "dynalay-ray")
    job = {
        **job,
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "static_configs": [{"targets": [f"127.0.0.1:{ray_service.metrics_port}"]}],
    }
    work = tmp_path_factory.mktemp("prometheus-ray")
    config = work / "prometheus.yml"
    config.write_text(json.dumps({"scrape_configs": [job]}))
    port = free_port()
    log = work / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=work,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "Prometheus /-/ready",
            lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200,
            30,
            log,
        )
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def promql(prometheus: str, query: str) -> list[dict]:
    r = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{query!r}: {body}"
    return body["data"]["result"]


def test_prometheus_with_the_repo_scrape_job_feeds_the_dashboard(ray_service, prometheus_url):
    sent = ray_service.sent
    total = 'sum(dynalay_requests_total{job="dynalay-ray", status="200"})'
    wait_for(
        f"{total} == {sent['200']}",
        lambda: [float(s["value"][1]) for s in promql(prometheus_url, total)] == [sent["200"]],
        METRICS_TIMEOUT_S,
    )
    assert promql(prometheus_url, 'max(up{job=~"dynalay|dynalay-ray"})')[0]["value"][1] == "1"
    time.sleep(2.5)  # two more scrapes, so rate() over every series has two points

    # Ray counters appear with their first increment (an action never taken has no series
    # yet, where `make serve` shows 0): every panel whose series exist has data.
    # A query is answerable when each of its series selectors (name and label matchers) has
    # series, e.g. not the looped-path latency when the agent kept every image straight.
    panels = [(w, e) for w, e in dashboard_queries() if w.startswith("panel ")]
    answerable = [(w, e) for w, e in panels if selectors_have_series(prometheus_url, e)]
    assert len(answerable) >= 20, sorted(set(panels) - set(answerable))

    def empty_panels() -> list[str]:
        return [w for w, e in answerable if not promql(prometheus_url, as_promql(e))]

    try:
        wait_for("data in every answerable panel", lambda: not empty_panels(), METRICS_TIMEOUT_S)
    except BaseException:
        raise AssertionError(f"panels without data: {empty_panels()}") from None
    for _, expr in panels:  # the others at least parse and run
        promql(prometheus_url, as_promql(expr))
    r = httpx.get(
        f"{prometheus_url}/api/v1/label/model/values",
        params={"match[]": "dynalay_model_info"},  # the $model variable's label_values()
        timeout=5,
    )
    assert r.json()["data"] == ["cifar10"]


SELECTOR = re.compile(r"(dynalay_[A-Za-z0-9_:]*)(\{[^}]*\})?")


def selectors_have_series(prometheus: str, expr: str) -> bool:
    expr = as_promql(expr)
    return all(
        promql(prometheus, f"count({name}{matchers})") for name, matchers in SELECTOR.findall(expr)
    )


# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    started: float
    status: int | str
    retry_after: str | None
    body: str
    seconds: float


async def load_until(url: str, stop: asyncio.Event, concurrency: int) -> list[Outcome]:
    image = CIFAR_PNGS[0].read_bytes()
    outcomes: list[Outcome] = []
    timeout = httpx.Timeout(30.0)  # a hung request fails the test instead of hanging it
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:

        async def one_client() -> None:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    r = await client.post("/predict", files={"file": ("a.png", image)})
                    outcome = Outcome(
                        started, r.status_code, r.headers.get("retry-after"), r.text[:200], 0
                    )
                except httpx.HTTPError as exc:
                    outcome = Outcome(started, type(exc).__name__, None, str(exc), 0)
                outcome.seconds = time.monotonic() - started
                outcomes.append(outcome)

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return outcomes


def test_a_replica_killed_under_load_is_replaced_and_loses_only_its_own_requests(ray_service):
    before = replica_pids(ray_service.launcher)
    assert len(before) == 2, before
    readiness: list[tuple[float, int, str]] = []

    async def scenario() -> tuple[list[Outcome], float]:
        stop = asyncio.Event()
        load = asyncio.create_task(load_until(ray_service.url, stop, concurrency=16))
        await asyncio.sleep(3)  # both replicas busy
        killed_at = time.monotonic()
        os.kill(before[0], signal.SIGKILL)  # a crash: no drain, requests in flight are lost
        async with httpx.AsyncClient(base_url=ray_service.url, timeout=10) as probe:
            deadline = killed_at + REPLACED_TIMEOUT_S
            while time.monotonic() < deadline:
                r = await probe.get("/readyz")
                readiness.append((time.monotonic() - killed_at, r.status_code, r.text))
                replaced = len(replica_pids(ray_service.launcher)) == 2
                seen_gap = any(code == 503 for _, code, _ in readiness)
                if r.status_code == 200 and replaced and seen_gap:
                    break
                await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # load on the replacement as well
        stop.set()
        return await load, killed_at

    outcomes, killed_at = asyncio.run(scenario())
    after = replica_pids(ray_service.launcher)
    assert len(after) == 2 and before[0] not in after and before[1] in after, (before, after)

    statuses = Counter(o.status for o in outcomes)
    assert set(statuses) <= {200, 503}, statuses  # no 500, no timeout, no reset
    lost = [o for o in outcomes if o.status == 503]
    assert all(o.retry_after == "1" and "replica" in o.body for o in lost), lost
    assert len(lost) <= 16  # at most the requests in flight at the kill
    # Only requests already under way when the replica died (or routed to it before Serve
    # noticed, well within a second) were lost; everything else was answered.
    assert all(o.started <= killed_at + 1.0 for o in lost), [o.started - killed_at for o in lost]
    assert statuses[200] > 100
    assert max(o.seconds for o in outcomes) < 30
    # While one replica was missing /readyz said so, then 200 again with two warm.
    not_ready = [text for _, code, text in readiness if code == 503]
    assert not_ready and "1 of 2 replicas are warm" in not_ready[0], readiness[:5]
    assert readiness[-1][1] == 200


def test_sigterm_stops_the_deployment_and_the_cluster(ray_service):
    assert cluster_processes(ray_service.temp_dir), "the cluster runs before the stop"
    ray_service.launcher.send_signal(signal.SIGTERM)
    assert ray_service.launcher.wait(timeout=90) == 0, ray_service.log_tail()
    left = wait_for(
        "no process of the cluster left",
        lambda: not cluster_processes(ray_service.temp_dir) or None,
        15,
    )
    assert left is True
    port = int(ray_service.url.rsplit(":", 1)[1])
    for free in (port, ray_service.metrics_port):
        assert listening_addresses(free) == set()
        with socket.socket() as s:  # a new server can take the port (as uvicorn binds it)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", free))
            s.listen()


def test_sigterm_while_the_replicas_start_stops_at_once(model_repo, tmp_path):
    """Serve waits for every replica to be warm; a stop asked for meanwhile must not wait."""
    service = launch(model_repo, tmp_path / "launcher.log")
    try:
        wait_for(
            "Serve deploying the replicas",
            lambda: b"Deploying new version" in service.log.read_bytes(),
            READY_TIMEOUT_S,
            service.log,
        )
        service.launcher.send_signal(signal.SIGTERM)
        assert service.launcher.wait(timeout=60) == 0, service.log_tail()
        assert "stopped while starting" in service.log_tail() or (
            "ready after" in service.log_tail()  # the replicas beat the signal: also fine
        )

        def gone() -> bool:
            return not cluster_processes(service.temp_dir)

        wait_for("no process of the cluster left", gone, 15)
    finally:
        _tear_down(service)
