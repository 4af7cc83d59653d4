"""The request queue both schedulers hold: room (held requests included), the non-finite guard,
each request settled once, and the drain (answers within the grace period, 503 after it)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.core import Metrics, ServiceError
from service.engines import EngineInput, SampleResult
from service.scheduling import NON_FINITE, SHUTTING_DOWN, QueueLimits, RequestQueue

pytestmark = pytest.mark.anyio
ITEM = EngineInput(np.zeros((3, 2, 2), np.float32))
GOOD = SampleResult(0, (0.75, 0.25), 0, 0, True, 3, 1000)
NAN = SampleResult(0, (float("nan"), 0.25), 0, 0, True, 3, 1000)


def queue(max_queue: int = 4, held=lambda: 0) -> RequestQueue:
    return RequestQueue("m", Metrics(CollectorRegistry()), QueueLimits(max_queue), held=held)


async def submitted(q: RequestQueue, n: int) -> list[asyncio.Task]:
    deadline = time.monotonic() + 30
    tasks = [asyncio.create_task(q.submit(ITEM, deadline)) for _ in range(n)]
    await asyncio.sleep(0)  # each task runs up to its wait: queued
    return tasks


async def test_requests_held_back_by_the_scheduler_count_against_the_queue():
    held = [0]
    q = queue(max_queue=2, held=lambda: held[0])
    tasks = await submitted(q, 1)
    assert q.has_room()
    held[0] = 1  # e.g. one sample waiting for room in the loop pool
    assert not q.has_room()
    with pytest.raises(ServiceError) as refused:
        await q.submit(ITEM, time.monotonic() + 30)
    assert refused.value.status == 503 and "overloaded" in refused.value.message
    for pending in q.take_queued(8):
        q.answer(pending, GOOD, 0.0, 1)
    assert (await tasks[0]).sample == GOOD


async def test_a_non_finite_sample_fails_alone_and_each_request_is_settled_once():
    q = queue()
    tasks = await submitted(q, 2)
    bad, good = q.take_queued(8)
    q.answer(bad, NAN, 0.0, 2)
    q.answer(good, GOOD, 0.0, 2)
    q.fail(good, ServiceError(500, "late"))  # already settled: changes nothing
    with pytest.raises(ServiceError) as failed:
        await tasks[0]
    assert (failed.value.status, failed.value.message) == (500, NON_FINITE)
    assert (await tasks[1]).sample == GOOD
    await asyncio.wait_for(q.drain(1.0, _nothing), 1.0)  # nothing unsettled: no wait


async def test_the_drain_answers_within_the_grace_period_and_503s_what_is_left():
    q = queue()
    tasks = await submitted(q, 3)
    first, second = q.take_queued(2)  # taken by the worker; the third is still queued
    stopped = []

    async def worker_answers_one() -> None:
        await asyncio.sleep(0.01)
        q.answer(first, GOOD, 0.0, 2)

    async def stop_worker() -> None:
        stopped.append(time.monotonic())

    answering = asyncio.create_task(worker_answers_one())
    began = time.monotonic()
    await q.drain(0.2, stop_worker)
    await answering
    assert stopped and stopped[0] - began >= 0.2  # the grace period ran out first
    assert (await tasks[0]).sample == GOOD
    for task in tasks[1:]:
        with pytest.raises(ServiceError) as refused:
            await task
        assert refused.value.status == 503 and SHUTTING_DOWN in refused.value.message
    with pytest.raises(ServiceError):
        q.check_room()  # closed: refuses at once
    assert second not in q.take_queued(8)


async def _nothing() -> None:
    return None
