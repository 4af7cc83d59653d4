"""Dynamic batching: same answers as unbatched, bounded queue, deadlines, failure isolation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.helpers import (
    CIFAR_PNGS,
    StubEngine,
    serving_async,
    settings_for,
    wait_ready,
)

pytestmark = pytest.mark.anyio
COMPARED = ("label", "class_index", "action", "iterations", "converged", "layer_evaluations")
PNG = CIFAR_PNGS[0].read_bytes()
FORCED = (None, "loop_l1", None, "loop_all", "straight", "loop_l1_l2", None, "loop_all")


async def post_image(client, index: int, action: str | None = None):
    path = CIFAR_PNGS[index % len(CIFAR_PNGS)]
    data = {"action": action} if action else {}
    return await client.post(
        "/predict", files={"file": (path.name, path.read_bytes(), "image/png")}, data=data
    )


async def concurrent_answers(settings) -> list[dict]:
    async with serving_async(create_app(settings)) as client:
        answers = await asyncio.gather(
            *(post_image(client, i, action) for i, action in enumerate(FORCED))
        )
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    return [r.json() for r in answers]


async def test_batched_answers_equal_unbatched_answers(model_dir):
    single = await concurrent_answers(settings_for(model_dir, max_batch_size=1))
    batched = await concurrent_answers(
        settings_for(model_dir, max_batch_size=8, max_queue_delay_ms=200)
    )
    assert max(a["batch_size"] for a in single) == 1
    assert max(a["batch_size"] for a in batched) > 1  # batching really happened
    for one, many in zip(single, batched, strict=True):
        assert {k: one[k] for k in COMPARED} == {k: many[k] for k in COMPARED}
        assert one["probabilities"].keys() == many["probabilities"].keys()
        for label, p in one["probabilities"].items():
            assert many["probabilities"][label] == pytest.approx(p, abs=1e-5)


def stub_app(repo, engine: StubEngine, **overrides):
    settings = settings_for(repo, engine="stub", **overrides)
    return create_app(settings, engines={"stub": lambda directory, device: engine})


async def test_a_full_queue_answers_503_with_retry_after(stub_repo):
    engine = StubEngine(stub_repo)
    engine.gate = threading.Event()
    app = stub_app(stub_repo, engine, max_queue=1, max_batch_size=1)
    async with serving_async(app) as client:
        running = asyncio.create_task(post_image(client, 0))  # taken by the batcher, blocks
        await asyncio.to_thread(engine.entered.wait, 10)
        queued = asyncio.create_task(post_image(client, 1))  # fills the queue of one
        for _ in range(200):
            if not app.state.dynalay.models["stub"].scheduler.has_room():
                break
            await asyncio.sleep(0.01)
        rejected = await post_image(client, 2)
        engine.gate.set()
        assert rejected.status_code == 503
        assert rejected.headers["retry-after"] == "1"
        assert "overloaded" in rejected.json()["error"]
        assert (await running).status_code == 200
        assert (await queued).status_code == 200


async def test_requests_past_their_deadline_get_504_and_never_reach_the_engine(stub_repo):
    engine = StubEngine(stub_repo)
    engine.gate = threading.Event()
    app = stub_app(stub_repo, engine, max_batch_size=1, request_timeout_ms=300)
    async with serving_async(app) as client:
        first = asyncio.create_task(post_image(client, 0))
        await asyncio.to_thread(engine.entered.wait, 10)
        late = await post_image(client, 1)  # queued behind the blocked batch
        assert late.status_code == 504 and "deadline" in late.json()["error"]
        engine.gate.set()
        assert (await first).status_code == 504  # its compute outlived the deadline too
        await asyncio.sleep(0.05)
        assert engine.batches == [1]  # the late request was dropped before compute
        assert (await post_image(client, 2)).status_code == 200


async def test_a_failing_batch_fails_only_its_requests(stub_repo):
    engine = StubEngine(stub_repo, fail_when=lambda batch: batch[0].action == 3)
    async with serving_async(stub_app(stub_repo, engine, max_batch_size=1)) as client:
        failed = await post_image(client, 0, "loop_all")
        assert failed.status_code == 500
        assert set(failed.json()) == {"error"} and "Traceback" not in failed.text
        assert (await post_image(client, 1)).status_code == 200  # the batcher goes on


def test_not_ready_until_loaded_then_ready(stub_repo):
    gate = threading.Event()

    def slow_factory(directory, device):
        gate.wait(timeout=30)
        return StubEngine(directory)

    app = create_app(settings_for(stub_repo, engine="slow"), engines={"slow": slow_factory})
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
        busy = client.post("/predict", files={"file": ("x.png", b"x", "image/png")})
        assert busy.status_code == 503 and "not ready" in busy.json()["error"]
        assert busy.headers["retry-after"] == "1"
        gate.set()
        wait_ready(client)
        assert (
            client.post("/predict", files={"file": ("x.png", PNG, "image/png")}).status_code == 200
        )


def test_a_failed_load_is_reported_by_readyz_and_healthz(tmp_path):
    with TestClient(create_app(settings_for(tmp_path / "missing"))) as client:
        for _ in range(500):
            if client.get("/healthz").status_code == 503:
                break
            time.sleep(0.01)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "does not exist" in ready.json()["error"]
        assert "does not exist" in client.get("/healthz").json()["error"]
