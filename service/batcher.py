"""Dynamic micro-batching in front of one model's engine.

Requests wait in a bounded asyncio queue. A batch closes when it holds `max_batch_size` requests
or when `max_delay_s` has passed since its *oldest* request arrived (Triton's rule), so a request
that already waited while the previous batch ran does not wait again. Requests whose deadline
passed, or whose client gave up, are dropped before compute. The engine runs on one dedicated
thread per model: the event loop stays free, and one model never runs two batches at once.
A failing batch fails only its own requests; the loop goes on. A sample whose scores are not
finite (a broken model) fails alone with a 500: NaN never reaches a client.

Stopping drains: no new request is taken, the queue is worked off within a grace period, and
only what is left after it gets a 503.

This is batch scheduling: a batch is answered when its slowest loop has converged. Iteration-level
scheduling (service/loop_scheduler.py) builds on this class and keeps its queue, admission,
deadlines and drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from service.engines import BatchOutput, Engine, EngineInput, SampleResult
from service.errors import ServiceError, retry_later
from service.metrics import Metrics

log = logging.getLogger(__name__)

BATCH_FAILED = "inference failed for the batch holding this request (details are in the server log)"
NON_FINITE = "the model produced non-finite scores for this input (details are in the server log)"
SHUTTING_DOWN = "the server is shutting down"
DEADLINE_PASSED = (
    "the request was not answered within its deadline (DYNALAY_REQUEST_TIMEOUT_MS); "
    "retry later, or with less load"
)


@dataclass(frozen=True)
class Completed:
    sample: SampleResult
    queue_seconds: float  # arrival in the queue → batch dispatch
    batch_size: int


@dataclass
class Pending:
    """One queued request: its input, the future its caller awaits, arrival and deadline."""

    item: EngineInput
    future: asyncio.Future[Completed]
    enqueued: float  # time.monotonic()
    deadline: float  # time.monotonic()


class MicroBatcher:
    def __init__(
        self,
        engine: Engine,
        metrics: Metrics,
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        retry_after_s: int = 1,
    ) -> None:
        self.engine = engine
        self.model = engine.meta.name
        self._metrics = metrics
        self._max_batch_size = max_batch_size
        self._max_delay_s = max_delay_s
        self._max_queue = max_queue
        self._retry_after_s = retry_after_s
        self._queue: asyncio.Queue[Pending] = asyncio.Queue(max_queue)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"engine-{self.model}")
        self._task: asyncio.Task[None] | None = None
        self._closed = False  # stop() has begun: submit() refuses
        # The batch being collected or run: taken off the queue, so stop() must see it here.
        self._current: list[Pending] = []

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._serve(), name=f"batcher-{self.model}"
        )

    async def stop(self, grace_s: float = 0.0) -> None:
        """Take no new request, finish the queued ones within `grace_s`, then stop.

        Whatever is still queued or running after the grace period gets a 503, so no client is
        left waiting for its deadline.
        """
        self._closed = True
        if self._task is not None and grace_s > 0:
            with contextlib.suppress(TimeoutError):
                # join() returns once every request taken off the queue was answered.
                await asyncio.wait_for(self._queue.join(), grace_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for pending in self._taken():
            self._fail(pending, self._unavailable(SHUTTING_DOWN))
        while not self._queue.empty():
            self._fail(self._queue.get_nowait(), self._unavailable(SHUTTING_DOWN))
        self._executor.shutdown(wait=False, cancel_futures=True)

    def check_room(self) -> None:
        """Refuse (503) up front when the queue is full or closed, before the caller spends
        CPU on decoding an input that could not be queued anyway (overload stays cheap)."""
        if self._closed:
            raise self._unavailable(SHUTTING_DOWN)
        if not self.has_room():
            raise self._overloaded()

    def has_room(self) -> bool:
        """Whether one more request can be queued now (the queue holds fewer than max_queue)."""
        return not self._queue.full()

    async def submit(self, item: EngineInput, deadline: float) -> Completed:
        """Queue one input and wait for its result; raises ServiceError 503/504/500."""
        if self._closed:
            raise self._unavailable(SHUTTING_DOWN)
        if not self.has_room():
            raise self._overloaded()
        future: asyncio.Future[Completed] = asyncio.get_running_loop().create_future()
        pending = Pending(item, future, time.monotonic(), deadline)
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            raise self._overloaded() from None
        self._publish_depth()
        self._queued()
        try:
            # On timeout wait_for cancels the future, which tells the loop to skip this item.
            return await asyncio.wait_for(future, max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise ServiceError(504, DEADLINE_PASSED) from None

    def _queued(self) -> None:
        """A request was queued (a hook: the loop scheduler wakes its engine thread)."""

    def _taken(self) -> list[Pending]:
        """Requests taken off the queue and not answered yet (stop() fails what is left)."""
        return list(self._current)

    async def _serve(self) -> None:
        while True:
            batch = await self._collect()
            try:
                live = self._drop_dead(batch)
                if live:
                    await self._execute(live)
            finally:
                for _ in batch:
                    self._queue.task_done()
                self._current = []

    async def _collect(self) -> list[Pending]:
        batch = self._current = [await self._queue.get()]
        first = batch[0]
        closes_at = first.enqueued + self._max_delay_s
        while len(batch) < self._max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            wait_s = closes_at - time.monotonic()
            if wait_s <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), wait_s))
            except TimeoutError:
                break
        self._publish_depth()
        return batch

    def _drop_dead(self, batch: list[Pending]) -> list[Pending]:
        now = time.monotonic()
        live = []
        for pending in batch:
            if pending.future.done():  # the client timed out or went away
                continue
            if now >= pending.deadline:
                self._fail(pending, ServiceError(504, DEADLINE_PASSED))
                continue
            live.append(pending)
        return live

    async def _execute(self, batch: list[Pending]) -> None:
        dispatched = time.monotonic()
        for pending in batch:
            self._metrics.queue_duration.labels(self.model).observe(dispatched - pending.enqueued)
        self._metrics.batch_size.labels(self.model).observe(len(batch))
        inputs = [pending.item for pending in batch]
        loop = asyncio.get_running_loop()
        try:
            output = await loop.run_in_executor(self._executor, self._run, inputs)
        except asyncio.CancelledError:
            for pending in batch:
                self._fail(pending, self._unavailable(SHUTTING_DOWN))
            raise
        except Exception:
            log.exception("model %r: a batch of %d failed", self.model, len(batch))
            for pending in batch:
                self._fail(pending, ServiceError(500, BATCH_FAILED))
            return
        for stage, seconds in output.stage_seconds.items():
            self._metrics.observe_stage(self.model, stage, seconds)
        for pending, sample in zip(batch, output.samples, strict=True):
            if pending.future.done():
                continue
            if not all(map(math.isfinite, sample.probabilities)):
                log.error("model %r: non-finite scores for a sample; answered 500", self.model)
                self._fail(pending, ServiceError(500, NON_FINITE))
                continue
            queued = dispatched - pending.enqueued
            pending.future.set_result(Completed(sample, queued, len(batch)))
            self._metrics.observe_answer_time(self.model, sample.action, pending.enqueued)

    def _run(self, inputs: list[EngineInput]) -> BatchOutput:
        output = self.engine.run(inputs)
        if len(output.samples) != len(inputs):
            raise RuntimeError(f"engine returned {len(output.samples)} results for {len(inputs)}")
        return output

    def _overloaded(self) -> ServiceError:
        return self._unavailable(
            f"model {self.model!r} is overloaded ({self._max_queue} requests queued)"
        )

    def _unavailable(self, why: str) -> ServiceError:
        return retry_later(503, f"{why}; retry in {self._retry_after_s} s", self._retry_after_s)

    def _publish_depth(self) -> None:
        self._metrics.queue_depth.labels(self.model).set(self._queue.qsize())

    @staticmethod
    def _fail(pending: Pending, error: ServiceError) -> None:
        if not pending.future.done():
            pending.future.set_exception(error)
