"""The in-process half of graceful shutdown: the lifespan drains the batchers.

On shutdown the queue is worked off within DYNALAY_SHUTDOWN_GRACE_S (queued requests are
answered, not failed); only what is left after the grace period gets a prompt 503, and new
requests are refused at admission. The wire-level half is test_graceful_shutdown.py.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from service.app import create_app
from tests.reliability.clean_errors import problems
from tests.service.helpers import CIFAR_PNGS, StubEngine, settings_for

pytestmark = pytest.mark.anyio
PNG = CIFAR_PNGS[0].read_bytes()
QUEUED = 8


def stub_app(repo, engine: StubEngine, grace_s: float):
    settings = settings_for(repo, engine="stub", max_batch_size=1, shutdown_grace_s=grace_s)
    return create_app(settings, engines={"stub": lambda directory, device: engine})


async def post(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/predict", files={"file": ("x.png", PNG, "image/png")})


async def requests_during_shutdown(app, engine: StubEngine) -> tuple[list, httpx.Response]:
    """Queue QUEUED requests behind a running batch, then shut the lifespan down."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        async with app.router.lifespan_context(app):
            while (await client.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.01)
            tasks = [asyncio.create_task(post(client)) for _ in range(QUEUED)]
            await asyncio.to_thread(engine.entered.wait, 5)  # the first batch runs
            await asyncio.sleep(0.05)  # the others are queued
            shutdown_began = asyncio.Event()

            async def late_request() -> httpx.Response:
                await shutdown_began.wait()
                return await post(client)

            late = asyncio.create_task(late_request())
            app.state.dynalay.begin_drain()  # what SIGTERM does first
            shutdown_began.set()
        answers = await asyncio.wait_for(asyncio.gather(*tasks), 10)
        return answers, await asyncio.wait_for(late, 10)


async def test_queued_requests_are_answered_during_the_grace_period(stub_repo):
    engine = StubEngine(stub_repo, delay_s=0.02)
    answers, late = await requests_during_shutdown(stub_app(stub_repo, engine, 5.0), engine)
    assert [a.status_code for a in answers] == [200] * QUEUED
    assert late.status_code == 503 and "shutting down" in late.json()["error"]
    assert problems(late) == []


async def test_what_is_left_after_the_grace_period_gets_a_prompt_503(stub_repo):
    engine = StubEngine(stub_repo)
    engine.gate = threading.Event()  # the first batch never finishes on its own
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        answers, _ = await requests_during_shutdown(stub_app(stub_repo, engine, 0.2), engine)
        waited = loop.time() - started
    finally:
        engine.gate.set()  # release the engine thread
    assert {a.status_code for a in answers} == {503}
    assert all("shutting down" in a.json()["error"] and problems(a) == [] for a in answers)
    assert waited < 3.0  # not the 10 s request deadline


@pytest.fixture
def stub_repo(tmp_path):
    (tmp_path / "stub").mkdir()
    (tmp_path / "stub" / "manifest.json").write_text("{}")
    return tmp_path
