"""The Ray Serve parts without a cluster: the metrics bridge against the registry it copies, the
replica's lifespan and readiness middlewares on a real app, the proxy's lost-replica answer,
the settings and the deployment options. The real cluster is test_ray_serve.py."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from service.app import create_app
from service.core import Metrics
from service.ray import (
    PeriodicBridge,
    RaySettings,
    RegistryBridge,
    ReplicaCount,
    ReplicaLostAs503,
    ServeWhenWarm,
    WarmReplicasReadiness,
    proxy_middlewares,
)
from tests.service.helpers import StubEngine, settings_for

pytestmark = pytest.mark.anyio

# --------------------------------------------------------------------------------------------
# The metrics bridge


class RecordingSinks:
    """Stands in for Ray's metrics: what a metrics endpoint would show, per replica."""

    def __init__(self, replica: str = "r0", shared: dict | None = None) -> None:
        self.replica = replica
        self.values: dict = shared if shared is not None else {}
        self.gauge_sets = 0

    def counter(self, name, description, tag_keys):
        sinks = self

        class Counter:
            def inc(self, value, tags):
                assert tuple(sorted(tags)) == tag_keys
                key = (sinks.replica, name, tuple(sorted(tags.items())))
                sinks.values[key] = sinks.values.get(key, 0.0) + value

        return Counter()

    def gauge(self, name, description, tag_keys):
        sinks = self

        class Gauge:
            def set(self, value, tags):
                sinks.gauge_sets += 1
                sinks.values[(sinks.replica, name, tuple(sorted(tags.items())))] = value

        return Gauge()


def registry_samples(registry: CollectorRegistry) -> dict:
    """name+labels -> value of every sample a Prometheus scrape of the registry would see."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def nonzero(samples: dict) -> dict:
    return {key: value for key, value in samples.items() if value != 0}


def answer_some(metrics: Metrics, n: int, action: str = "loop_all") -> None:
    metrics.register_model("cifar10", "1", "torch", "cpu")
    for i in range(n):
        metrics.observe_answer("cifar10", 200, 0.003 * (i + 1))
        metrics.observe_prediction("cifar10", action, ("l1",), i % 3, i % 2 == 0, 4 + i, 10**8)
        metrics.batch_size.labels("cifar10").observe(1 + i % 4)  # exactly on bucket bounds
        metrics.observe_section("cifar10", "straight", 0.001)
    metrics.observe_answer("cifar10", 400, 0.0001)
    metrics.queue_depth.labels("cifar10").set(3)


def test_the_bridge_forwards_every_sample_exactly():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    sinks = RecordingSinks()
    bridge = RegistryBridge(registry, sinks)
    answer_some(metrics, 5)
    bridge.sync()
    answer_some(metrics, 7, action="straight")  # iterations 0: the histogram's bucket at 0
    bridge.sync()
    bridge.sync()  # nothing new: no double counting

    forwarded = {(name, labels): v for (_, name, labels), v in sinks.values.items()}
    expected = registry_samples(registry)
    # Ray counters start at their first increment: the series pre-created at 0 come later.
    assert nonzero(forwarded) == nonzero(expected)
    assert forwarded[("dynalay_requests_in_progress", (("model", "cifar10"),))] == 0  # a gauge
    # Spot checks of what the dashboard reads: counts, exact sums, the 0 bucket.
    assert expected[("dynalay_requests_total", (("model", "cifar10"), ("status", "200")))] == 12
    batch_sum = expected[("dynalay_batch_size_sum", (("model", "cifar10"),))]
    assert batch_sum == sum(1 + i % 4 for i in range(5)) + sum(1 + i % 4 for i in range(7))
    zero = (("action", "straight"), ("le", "0.0"), ("model", "cifar10"))
    assert expected[("dynalay_fixed_point_iterations_bucket", zero)] == 3  # i % 3 == 0 of 7


def test_the_sum_over_replicas_is_the_services_total():
    shared: dict = {}
    registries = [CollectorRegistry() for _ in range(2)]
    bridges = [
        RegistryBridge(reg, RecordingSinks(f"replica-{i}", shared))
        for i, reg in enumerate(registries)
    ]
    answer_some(Metrics(registries[0]), 4)
    answer_some(Metrics(registries[1]), 9)
    for bridge in bridges:
        bridge.sync()

    summed: dict = defaultdict(float)
    for (_, name, labels), value in shared.items():
        summed[(name, labels)] += value
    totals: dict = defaultdict(float)
    for registry in registries:
        for key, value in registry_samples(registry).items():
            totals[key] += value
    assert nonzero(summed) == nonzero(totals)
    assert summed[("dynalay_requests_total", (("model", "cifar10"), ("status", "200")))] == 13


def test_gauges_are_set_again_on_every_sync():
    """Ray drops a gauge not set for a while; an idle replica must keep its model_info."""
    registry = CollectorRegistry()
    Metrics(registry).register_model("cifar10", "1", "torch", "cpu")
    sinks = RecordingSinks()
    bridge = RegistryBridge(registry, sinks)
    bridge.sync()
    first = sinks.gauge_sets
    bridge.sync()
    assert first > 0 and sinks.gauge_sets == 2 * first


async def test_the_periodic_bridge_survives_a_failing_sink_and_flushes_on_stop():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    calls = []

    class Flaky(RegistryBridge):
        def sync(self) -> None:
            calls.append(len(calls))
            if len(calls) == 1:
                raise RuntimeError("metrics agent unreachable")
            super().sync()

    sinks = RecordingSinks()
    periodic = PeriodicBridge(Flaky(registry, sinks), interval_s=0.01)
    periodic.start()
    await asyncio.sleep(0.1)
    metrics.observe_answer("cifar10", 200, 0.01)  # after the last periodic sync, maybe
    await periodic.stop()
    assert len(calls) >= 3  # went on after the failure
    key = ("r0", "dynalay_requests_total", (("model", "cifar10"), ("status", "200")))
    assert sinks.values[key] == 1  # the final sync on stop counted it


# --------------------------------------------------------------------------------------------
# The replica's lifespan: traffic only once warm


class LifespanDriver:
    """Speaks the ASGI lifespan protocol to an app, as Serve's replica (uvicorn's LifespanOn)."""

    def __init__(self, app) -> None:
        self.app = app
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.sent: list[dict] = []
        self.got = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        async def send(message):
            self.sent.append(message)
            self.got.set()

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.create_task(self.app(scope, self.inbox.get, send))
        await self.inbox.put({"type": "lifespan.startup"})

    async def next_message(self, timeout: float = 10) -> dict:
        await asyncio.wait_for(self.got.wait(), timeout)
        self.got.clear()
        return self.sent[-1]

    async def shutdown(self) -> dict:
        await self.inbox.put({"type": "lifespan.shutdown"})
        message = await self.next_message()
        await asyncio.wait_for(self.task, 10)
        return message


def gated_app(repo: Path, warm_gate: threading.Event, fail: bool = False):
    def factory(directory, device):
        if fail:
            raise RuntimeError("checkpoint unreadable")
        engine = StubEngine(directory)
        engine.warmup = lambda: warm_gate.wait(10)  # loading is slow
        return engine

    return create_app(settings_for(repo, engine="stub"), engines={"stub": factory})


async def test_startup_completes_only_once_every_model_is_warm(stub_repo):
    gate = threading.Event()
    app = gated_app(stub_repo, gate)
    events = []

    async def drained() -> None:
        events.append("drained")

    app.add_middleware(
        ServeWhenWarm,
        state=app.state.dynalay,
        on_serving=lambda: events.append("serving"),
        on_drained=drained,
    )
    driver = LifespanDriver(app)
    await driver.start()
    await asyncio.sleep(0.3)
    assert driver.sent == [] and events == []  # loading: Serve must not route here yet
    gate.set()
    assert (await driver.next_message())["type"] == "lifespan.startup.complete"
    assert app.state.dynalay.ready and events == ["serving"]
    assert (await driver.shutdown())["type"] == "lifespan.shutdown.complete"
    assert events == ["serving", "drained"]


async def test_a_model_that_fails_to_load_fails_the_replica_start(stub_repo):
    app = gated_app(stub_repo, threading.Event(), fail=True)
    app.add_middleware(
        ServeWhenWarm, state=app.state.dynalay, on_serving=lambda: None, on_drained=asyncio.sleep
    )
    driver = LifespanDriver(app)
    await driver.start()
    message = await driver.next_message()
    assert message["type"] == "lifespan.startup.failed"
    assert "failed to load" in message["message"] and "unreadable" in message["message"]
    driver.task.cancel()


# --------------------------------------------------------------------------------------------
# /readyz waits for the sibling replicas


class FixedCount:
    def __init__(self, running: int) -> None:
        self.value = running

    async def running(self) -> int:
        return self.value


async def test_readyz_is_503_until_enough_replicas_are_warm(stub_repo):
    gate = threading.Event()
    gate.set()
    app = gated_app(stub_repo, gate)
    count = FixedCount(1)
    app.add_middleware(WarmReplicasReadiness, state=app.state.dynalay, replicas=count, required=2)
    async with serving_async_unready(app) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
        assert ready.json() == {
            "ready": False,
            "models": ["stub"],
            "error": "1 of 2 replicas are warm",
        }
        oip = await client.get("/v2/health/ready")
        assert oip.status_code == 503 and oip.json() == {"ready": False}
        assert (await client.get("/healthz")).status_code == 200  # liveness is per replica
        count.value = 2
        assert (await client.get("/readyz")).json() == {"ready": True, "models": ["stub"]}
        assert (await client.get("/v2/health/ready")).status_code == 200


@contextlib.asynccontextmanager
async def serving_async_unready(app):
    """Like helpers.serving_async, which waits for /readyz 200 (here that depends on the
    sibling count): waits for the app's own state instead."""
    async with app.router.lifespan_context(app):
        while not app.state.dynalay.ready:
            await asyncio.sleep(0.02)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_the_replica_count_asks_serve_at_most_once_a_second():
    now = [0.0]
    asked = []

    class Counted(ReplicaCount):
        def _ask_serve(self) -> int:
            asked.append(now[0])
            return 2

    count = Counted("dynalay", "dynalay", clock=lambda: now[0])
    assert await count.running() == 2
    now[0] = 0.5
    assert await count.running() == 2
    now[0] = 1.2
    await count.running()
    assert asked == [0.0, 1.2]


# --------------------------------------------------------------------------------------------
# Serve's proxy: a lost replica's request answers 503 + Retry-After


async def call(app, path: str = "/predict") -> tuple[int, dict, bytes]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.post(path, content=b"{}")
        return r.status_code, dict(r.headers), r.content


async def test_a_request_whose_replica_died_gets_503_with_retry_after():
    async def proxy_that_lost_its_replica(scope, receive, send):
        return  # what Serve's proxy does on an actor error: no response at all

    status, headers, body = await call(ReplicaLostAs503(proxy_that_lost_its_replica, 2))
    assert status == 503 and headers["retry-after"] == "2"
    assert b"replica handling this request stopped" in body


async def test_answers_that_exist_pass_through_the_proxy_middleware_unchanged():
    async def answering(scope, receive, send):
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b'{"error":"boom"}'})

    assert await call(ReplicaLostAs503(answering)) == await call(answering)


def test_the_proxy_callback_uses_the_services_retry_after(monkeypatch):
    monkeypatch.setenv("DYNALAY_RETRY_AFTER_S", "7")
    (middleware,) = proxy_middlewares()
    assert middleware.cls is ReplicaLostAs503 and middleware.kwargs == {"retry_after_s": 7}


# --------------------------------------------------------------------------------------------
# Settings and deployment options


def test_ray_settings_defaults_and_environment(monkeypatch):
    defaults = RaySettings()
    assert (defaults.replicas, defaults.metrics_port, defaults.autoscaling) == (2, 8080, False)
    assert defaults.warm_replicas_required == 2
    monkeypatch.setenv("DYNALAY_RAY_REPLICAS", "3")
    monkeypatch.setenv("DYNALAY_RAY_METRICS_PORT", "9100")
    monkeypatch.setenv("DYNALAY_RAY_AUTOSCALING", "true")
    monkeypatch.setenv("DYNALAY_RAY_MIN_REPLICAS", "2")
    monkeypatch.setenv("DYNALAY_RAY_MAX_REPLICAS", "6")
    ray = RaySettings()
    assert (ray.replicas, ray.metrics_port, ray.max_replicas) == (3, 9100, 6)
    assert ray.warm_replicas_required == 2  # the floor: scaling up never flaps readiness


def test_autoscaling_bounds_are_checked():
    with pytest.raises(ValidationError, match="min_replicas <= replicas <= max_replicas"):
        RaySettings(autoscaling=True, replicas=5, max_replicas=4)
    with pytest.raises(ValidationError):
        RaySettings(replicas=0)


def test_deployment_options_fixed_and_autoscaled():
    application = pytest.importorskip("service.ray.application")
    settings = settings_for(Path("models"), shutdown_grace_s=30)
    fixed = application.deployment_options(settings, RaySettings(replicas=3), cluster_gpus=0)
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["max_ongoing_requests"] == 64 and fixed["max_queued_requests"] == 256
    assert fixed["graceful_shutdown_timeout_s"] == 31  # the replica's own drain fits
    assert fixed["ray_actor_options"] == {"num_cpus": 1.0}
    scaled = application.deployment_options(
        settings,
        RaySettings(autoscaling=True, replicas=2, min_replicas=1, max_replicas=5),
        cluster_gpus=0,
    )
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"] == {
        "min_replicas": 1,
        "initial_replicas": 2,
        "max_replicas": 5,
        "target_ongoing_requests": 16.0,
    }


@pytest.mark.parametrize(
    ("device", "cluster_gpus", "num_gpus"),
    [("auto", 1, 0.5), ("auto", 0, None), ("cpu", 2, None), ("cuda", 0, 0.5)],
)
def test_a_gpu_share_is_asked_for_when_the_replicas_will_use_cuda(device, cluster_gpus, num_gpus):
    application = pytest.importorskip("service.ray.application")
    settings = settings_for(Path("models"), device=device)
    options = application.actor_options(settings, RaySettings(), cluster_gpus)
    assert options.get("num_gpus") == num_gpus


def test_a_stop_during_the_start_is_heard_and_start_errors_reach_the_caller():
    from service.ray.__main__ import BackgroundStart

    stop, release = threading.Event(), threading.Event()
    slow = BackgroundStart(lambda: release.wait(10))  # Serve waiting for warm replicas
    stop.set()
    assert slow.wait_unless(stop) is False
    release.set()

    def failing() -> None:
        raise RuntimeError("proxy did not start")

    failed = BackgroundStart(failing)
    assert failed.wait_unless(threading.Event()) is True
    with pytest.raises(RuntimeError, match="proxy did not start"):
        failed.result()
