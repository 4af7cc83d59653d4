"""One model's request queue: admission, deadlines, the drain and the non-finite guard.

Both schedulers (batcher.py, loop_scheduler.py) hold one and differ only in
what their engine thread does with the requests they take. The queue is bounded: a request is
refused (503 + Retry-After) when `max_queue` requests are queued — counting, through `held`,
the requests a scheduler took off the queue but still holds back (samples waiting for room in
the loop pool) — or once the drain has begun. A request not answered by its deadline gets a
504; one whose deadline passed, or whose caller gave up, before its compute is dropped.

Every request taken off the queue is settled exactly once, by `answer` or `fail`: that is what
`drain` waits for (the asyncio queue's join), and what is left unsettled after the grace period
gets a 503, so no client is left waiting for its deadline. A sample whose scores are not finite
(a broken model) fails alone with a 500: NaN never reaches a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from service.core import Metrics, ServiceError, retry_later
from service.engines import EngineInput, SampleResult

log = logging.getLogger(__name__)

NON_FINITE = "the model produced non-finite scores for this input (details are in the server log)"
SHUTTING_DOWN = "the server is shutting down"
DEADLINE_PASSED = (
    "the request was not answered within its deadline (DYNALAY_REQUEST_TIMEOUT_MS); "
    "retry later, or with less load"
)


@dataclass(frozen=True)
class Completed:
    sample: SampleResult
    queue_seconds: float  # arrival in the queue → dispatch of its (straight) batch
    batch_size: int


@dataclass(eq=False)  # compared and hashed by identity: the queue tracks each one it hands out
class Pending:
    """One queued request: its input, the future its caller awaits, arrival and deadline."""

    item: EngineInput
    future: asyncio.Future[Completed]
    enqueued: float  # time.monotonic()
    deadline: float  # time.monotonic()


@dataclass(frozen=True)
class QueueLimits:
    max_queue: int  # requests queued (and held back) before a new one is refused with 503
    retry_after_s: int = 1  # the Retry-After of that 503


def _none() -> int:
    return 0


def _nothing() -> None:
    return None


class RequestQueue:
    """Requests between their callers (event loop) and one scheduler's engine thread."""

    def __init__(
        self,
        model: str,
        metrics: Metrics,
        limits: QueueLimits,
        held: Callable[[], int] = _none,
        on_queued: Callable[[], None] = _nothing,
    ) -> None:
        """`held`: requests taken off the queue that still count against max_queue;
        `on_queued`: called on the event loop after each request is queued."""
        self.model = model
        self._metrics = metrics
        self._limits = limits
        self._held = held
        self._on_queued = on_queued
        self._queue: asyncio.Queue[Pending] = asyncio.Queue(limits.max_queue)
        self._taken: dict[Pending, None] = {}  # off the queue, not settled yet (in take order)
        self._closed = False  # the drain has begun: submit() refuses

    # ---- callers -------------------------------------------------------------------------

    def has_room(self) -> bool:
        """Whether one more request can be queued now."""
        return self._queue.qsize() + self._held() < self._limits.max_queue

    def check_room(self) -> None:
        """Refuse (503) up front when the queue is full or closed, before the caller spends
        CPU on decoding an input that could not be queued anyway (overload stays cheap)."""
        if self._closed:
            raise self._unavailable(SHUTTING_DOWN)
        if not self.has_room():
            raise self._overloaded()

    async def submit(self, item: EngineInput, deadline: float) -> Completed:
        """Queue one input and wait for its result; raises ServiceError 503/504/500."""
        self.check_room()
        future: asyncio.Future[Completed] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(Pending(item, future, time.monotonic(), deadline))
        except asyncio.QueueFull:
            raise self._overloaded() from None
        self._publish_depth()
        self._on_queued()
        try:
            # On timeout wait_for cancels the future, which tells the scheduler to skip it.
            return await asyncio.wait_for(future, max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise ServiceError(504, DEADLINE_PASSED) from None

    # ---- the scheduler: taking ---------------------------------------------------------------

    def empty(self) -> bool:
        return self._queue.empty()

    def size(self) -> int:
        """Requests queued and not taken yet."""
        return self._queue.qsize()

    async def collect(self, max_batch_size: int, max_delay_s: float) -> list[Pending]:
        """Wait for a batch: it closes when full, or `max_delay_s` after its *oldest* request
        arrived (Triton's rule: a request that waited while the last batch ran waits no more)."""
        batch = [self._take(await self._queue.get())]
        closes_at = batch[0].enqueued + max_delay_s
        while len(batch) < max_batch_size:
            if not self._queue.empty():
                batch.append(self._take(self._queue.get_nowait()))
                continue
            wait_s = closes_at - time.monotonic()
            if wait_s <= 0:
                break
            try:
                batch.append(self._take(await asyncio.wait_for(self._queue.get(), wait_s)))
            except TimeoutError:
                break
        self._publish_depth()
        return batch

    def take_queued(self, max_batch_size: int) -> list[Pending]:
        """Whatever is queued now, up to `max_batch_size`, without waiting."""
        batch = []
        while len(batch) < max_batch_size and not self._queue.empty():
            batch.append(self._take(self._queue.get_nowait()))
        self._publish_depth()
        return batch

    def drop_dead(self, batch: list[Pending]) -> list[Pending]:
        """The requests of `batch` still worth computing; the others are settled (504 for a
        passed deadline, nothing for a caller that already gave up)."""
        now, live = time.monotonic(), []
        for pending in batch:
            if pending.future.done() or now >= pending.deadline:
                self.fail(pending, ServiceError(504, DEADLINE_PASSED))
            else:
                live.append(pending)
        return live

    def dispatch(self, batch: list[Pending]) -> float:
        """Record `batch` going to the engine (queue time, batch size); returns its time."""
        dispatched = time.monotonic()
        for pending in batch:
            self._metrics.queue_duration.labels(self.model).observe(dispatched - pending.enqueued)
        self._metrics.batch_size.labels(self.model).observe(len(batch))
        return dispatched

    # ---- the scheduler: settling -------------------------------------------------------------

    def answer(
        self, pending: Pending, sample: SampleResult, queue_seconds: float, batch_size: int
    ) -> None:
        """Settle a request with its result; a non-finite one fails alone with a 500."""
        if pending.future.done():  # its caller gave up meanwhile
            self._settle(pending)
        elif not all(map(math.isfinite, sample.probabilities)):
            log.error("model %r: non-finite scores for a sample; answered 500", self.model)
            self.fail(pending, ServiceError(500, NON_FINITE))
        else:
            pending.future.set_result(Completed(sample, queue_seconds, batch_size))
            self._metrics.observe_answer_time(self.model, sample.action, pending.enqueued)
            self._settle(pending)

    def fail(self, pending: Pending, error: ServiceError) -> None:
        """Settle a request with `error` (if its caller still waits)."""
        if not pending.future.done():
            pending.future.set_exception(error)
        self._settle(pending)

    # ---- the drain -----------------------------------------------------------------------

    async def drain(self, grace_s: float, stop_worker: Callable[[], Awaitable[None]]) -> None:
        """Take no new request, let the worker settle the queued and taken ones within
        `grace_s`, stop it, then answer whatever is left with a 503."""
        self._closed = True
        if grace_s > 0:
            with contextlib.suppress(TimeoutError):
                # join() returns once every request ever queued has been settled.
                await asyncio.wait_for(self._queue.join(), grace_s)
        await stop_worker()
        for pending in list(self._taken):
            self.fail(pending, self._unavailable(SHUTTING_DOWN))
        while not self._queue.empty():
            self.fail(self._take(self._queue.get_nowait()), self._unavailable(SHUTTING_DOWN))

    # ---- helpers -------------------------------------------------------------------------

    def _take(self, pending: Pending) -> Pending:
        self._taken[pending] = None
        return pending

    def _settle(self, pending: Pending) -> None:
        if pending in self._taken:  # settled once, however often it is answered or failed
            del self._taken[pending]
            self._queue.task_done()

    def _overloaded(self) -> ServiceError:
        return self._unavailable(
            f"model {self.model!r} is overloaded ({self._limits.max_queue} requests queued)"
        )

    def _unavailable(self, why: str) -> ServiceError:
        retry_after_s = self._limits.retry_after_s
        return retry_later(503, f"{why}; retry in {retry_after_s} s", retry_after_s)

    def _publish_depth(self) -> None:
        self._metrics.queue_depth.labels(self.model).set(self._queue.qsize())
