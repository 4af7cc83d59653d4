"""Iteration-level loop scheduling in the running app: early answers, the same answers as batch
scheduling and as each input alone, and the service's promises (deadlines, 503 on a full queue,
the drain, failure isolation) with samples mid-loop.

Mid-loop states come from a real tiny CNN whose loops never meet their tolerance (40 iterations
each) with every layer evaluation paced to a few milliseconds (tests/service/helpers.py
`PacedEngine`), so a loop is reliably still running while the test acts on it.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.scheduling import LoopScheduler, MicroBatcher
from tests.reliability.clean_errors import problems
from tests.service.helpers import (
    CIFAR_PNGS,
    SLOW_LOOPS_CNN,
    PacedEngine,
    StubEngine,
    serving_async,
    settings_for,
    write_never_converging_cnn,
)

pytestmark = pytest.mark.anyio
COMPARED = ("label", "class_index", "action", "converged", "layer_evaluations")
FORCED = (None, "loop_l1", "straight", "loop_all", "straight", "loop_l1_l2", None, "loop_all",
          "loop_all", "straight", "loop_l1", None)  # fmt: skip


async def post_image(client, index: int, action: str | None = None):
    path = CIFAR_PNGS[index % len(CIFAR_PNGS)]
    data = {"action": action} if action else {}
    return await client.post(
        "/predict", files={"file": (path.name, path.read_bytes(), "image/png")}, data=data
    )


async def answers_of(settings, concurrent: bool) -> list[dict]:
    async with serving_async(create_app(settings)) as client:
        if concurrent:
            got = await asyncio.gather(*(post_image(client, i, a) for i, a in enumerate(FORCED)))
        else:
            got = [await post_image(client, i, a) for i, a in enumerate(FORCED)]
    assert all(r.status_code == 200 for r in got), [r.text for r in got]
    return [r.json() for r in got]


def assert_same_answers(want: list[dict], got: list[dict]) -> None:
    for one, other in zip(want, got, strict=True):
        assert {k: one[k] for k in COMPARED} == {k: other[k] for k in COMPARED}
        assert abs(one["iterations"] - other["iterations"]) <= 1
        for label, p in one["probabilities"].items():
            assert other["probabilities"][label] == pytest.approx(p, abs=1e-5)


async def test_concurrent_answers_equal_sequential_ones_and_batch_scheduling(model_dir):
    sequential = await answers_of(
        settings_for(model_dir, loop_scheduling="iteration", max_batch_size=1), concurrent=False
    )
    small_pool = {"loop_scheduling": "iteration", "max_queue_delay_ms": 100, "loop_pool_size": 3}
    iteration = await answers_of(settings_for(model_dir, **small_pool), concurrent=True)
    batch = await answers_of(
        settings_for(model_dir, loop_scheduling="batch", max_queue_delay_ms=100), concurrent=True
    )
    assert max(a["batch_size"] for a in iteration) > 1  # the straight passes really batched
    assert_same_answers(sequential, iteration)
    assert_same_answers(sequential, batch)


def paced_app(repo, engine: PacedEngine, **overrides):
    # A generous deadline: on a busy shared CPU a niced test may get little of it.
    base = {"engine": "paced", "loop_scheduling": "iteration", "request_timeout_ms": 60_000}
    settings = settings_for(repo, **{**base, **overrides})
    return create_app(settings, engines={"paced": lambda directory, device: engine})


@pytest.fixture(scope="module")
def slow_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow-loops")
    write_never_converging_cnn(root)
    return root


def scheduler_of(app) -> LoopScheduler:
    batcher = app.state.dynalay.models["cifar10"].scheduler
    assert isinstance(batcher, LoopScheduler)
    return batcher


async def until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_a_straight_input_is_answered_while_a_loop_runs(slow_repo):
    engine = PacedEngine(slow_repo / "cifar10", layer_s=0.002)
    app = paced_app(slow_repo, engine)
    async with serving_async(app) as client:
        looped = asyncio.create_task(post_image(client, 0, "loop_all"))
        await until(lambda: scheduler_of(app).in_flight == 1)  # past its straight pass
        straight = await post_image(client, 1, "straight")
        assert straight.status_code == 200 and straight.json()["action"] == "straight"
        assert not looped.done()  # 40 iterations of 3 paced layers still to go
        answer = (await looped).json()
        metrics = client_metrics(await client.get("/metrics"))
    assert (answer["action"], answer["iterations"]) == ("loop_all", SLOW_LOOPS_CNN.max_iter)
    assert answer["converged"] is False
    assert straight.json()["latency_ms"] < answer["latency_ms"]
    model = (("model", "cifar10"),)
    assert metrics[("dynalay_loop_step_samples_count", model)] >= SLOW_LOOPS_CNN.max_iter
    for path in ("straight", "looped"):
        labels = (("model", "cifar10"), ("path", path))
        assert metrics[("dynalay_answer_duration_seconds_count", labels)] == 1
    assert metrics[("dynalay_loop_pool_occupancy", model)] == 0


async def test_straight_inputs_queued_while_a_loop_runs_share_one_batch_window(slow_repo):
    # A 3-layer paced step takes ~6 ms: the 80 ms window leaves the loop several steps.
    engine = PacedEngine(slow_repo / "cifar10", layer_s=0.002)
    app = paced_app(slow_repo, engine, max_queue_delay_ms=80)
    steps = ("dynalay_loop_step_samples_count", (("model", "cifar10"),))
    async with serving_async(app) as client:
        looped = asyncio.create_task(post_image(client, 0, "loop_all"))
        await until(lambda: scheduler_of(app).in_flight == 1)
        before = client_metrics(await client.get("/metrics"))[steps]
        straights = await asyncio.gather(*(post_image(client, i, "straight") for i in (1, 2, 3)))
        after = client_metrics(await client.get("/metrics"))[steps]
        assert not looped.done()
        await looped
    assert [r.json()["batch_size"] for r in straights] == [3, 3, 3]
    assert after - before >= 3  # the loop kept stepping while their window was open


def client_metrics(response: httpx.Response) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


async def test_a_deadline_passing_mid_loop_answers_504_and_frees_the_pool(slow_repo):
    engine = PacedEngine(slow_repo / "cifar10", layer_s=0.02)  # a loop takes ≥ 2.4 s
    app = paced_app(slow_repo, engine, request_timeout_ms=1500)
    async with serving_async(app) as client:
        scheduler = scheduler_of(app)
        task = asyncio.create_task(post_image(client, 0, "loop_all"))
        await until(lambda: scheduler.in_flight == 1)  # mid-loop when its deadline passes
        late = await task
        assert late.status_code == 504 and "deadline" in late.json()["error"]
        await until(lambda: scheduler.in_flight == 0)
        calls = engine.layer_calls
        await asyncio.sleep(0.1)
        assert engine.layer_calls == calls  # nothing iterates the dropped sample any more
        assert (await post_image(client, 1, "straight")).status_code == 200


async def test_samples_waiting_for_the_pool_count_against_the_queue(slow_repo):
    engine = PacedEngine(slow_repo / "cifar10", layer_s=0.005)  # a loop takes ≥ 0.6 s
    app = paced_app(slow_repo, engine, loop_pool_size=1, max_queue=2)
    async with serving_async(app) as client:
        looping = []
        for i in range(3):  # one iterates, then two wait for the pool: the queue's 2 places
            looping.append(asyncio.create_task(post_image(client, i, "loop_all")))
            await until(lambda n=i + 1: scheduler_of(app).in_flight == n)
        refused = await post_image(client, 3, "straight")
        assert refused.status_code == 503 and "overloaded" in refused.json()["error"]
        assert refused.headers["retry-after"] == "1"
        answers = await asyncio.gather(*looping)
    assert [a.status_code for a in answers] == [200, 200, 200]


async def test_a_failing_loop_step_fails_its_samples_and_the_service_goes_on(slow_repo):
    engine = PacedEngine(slow_repo / "cifar10", layer_s=0.002)
    app = paced_app(slow_repo, engine)
    async with serving_async(app) as client:
        looped = asyncio.create_task(post_image(client, 0, "loop_l1"))
        await until(lambda: scheduler_of(app).in_flight == 1)
        engine.fail = True
        failed = await looped
        engine.fail = False
        assert failed.status_code == 500, failed.text
        assert failed.json()["error"].startswith("inference failed in a loop step")
        assert problems(failed) == ["server error 500"]  # clean: nothing from the inside
        assert (await post_image(client, 1, "loop_l1")).status_code == 200
        assert (await post_image(client, 2, "straight")).status_code == 200


async def drain_with_loops_in_flight(app, n: int) -> tuple[list[httpx.Response], float]:
    """Start n looping requests, wait until all are mid-loop, then shut the lifespan down.
    Returns the answers and the seconds from the drain's start to the last answer."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        async with app.router.lifespan_context(app):
            await until(lambda: app.state.dynalay.ready, 60)
            tasks = [asyncio.create_task(post_image(client, i, "loop_all")) for i in range(n)]
            await until(lambda: scheduler_of(app).in_flight == n)
            drain_began = time.monotonic()
            app.state.dynalay.begin_drain()  # what SIGTERM does first
        answers = await asyncio.wait_for(asyncio.gather(*tasks), 10)
        return answers, time.monotonic() - drain_began


async def test_loops_in_flight_at_shutdown_finish_within_the_grace_period(slow_repo):
    engine = PacedEngine(slow_repo / "cifar10", layer_s=0.001)
    app = paced_app(slow_repo, engine, shutdown_grace_s=10.0, loop_pool_size=2)
    answers, _ = await drain_with_loops_in_flight(app, 4)  # two iterate, two wait for the pool
    assert [a.status_code for a in answers] == [200] * 4
    assert {a.json()["iterations"] for a in answers} == {SLOW_LOOPS_CNN.max_iter}


async def test_loops_left_after_the_grace_period_get_a_prompt_503(slow_repo):
    engine = PacedEngine(slow_repo / "cifar10", layer_s=0.02)  # a loop takes ≥ 2.4 s
    app = paced_app(slow_repo, engine, shutdown_grace_s=0.2)
    answers, waited = await drain_with_loops_in_flight(app, 3)
    assert {a.status_code for a in answers} == {503}
    assert all("shutting down" in a.json()["error"] and problems(a) == [] for a in answers)
    assert waited < 2.0  # not the loops' 2.4 s, nor the request deadline


def test_the_setting_picks_the_scheduler(model_dir, stub_repo):
    import contextlib

    from fastapi.testclient import TestClient

    from tests.service.helpers import wait_ready

    def batcher_type(settings, engines=None):
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(TestClient(create_app(settings, engines=engines)))
            wait_ready(client)
            (served,) = client.app.state.dynalay.models.values()
            return type(served.scheduler)

    assert batcher_type(settings_for(model_dir)) is LoopScheduler  # the default
    assert batcher_type(settings_for(model_dir, loop_scheduling="batch")) is MicroBatcher
    stub = {"stub": lambda directory, device: StubEngine(directory)}
    # Every engine offers steps (the stub too): the setting alone decides, with no fallback.
    assert batcher_type(settings_for(stub_repo, engine="stub"), stub) is LoopScheduler
    batch = settings_for(stub_repo, engine="stub", loop_scheduling="batch")
    assert batcher_type(batch, stub) is MicroBatcher
