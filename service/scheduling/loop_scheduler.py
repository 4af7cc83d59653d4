"""Iteration-level scheduling: straight inputs are answered at once, loops are batched per step.

The request queue, admission (503 when full), deadlines (504), the drain on shutdown and the
non-finite guard are the model's request queue (request_queue.py), as in batch
scheduling (batcher.py). What changes is what the engine thread does with a batch:

    ┌─ straight pass + agent over the requests queued now ─▶ answer every straight input
    │        looped inputs join the waiting list (with their straight-pass state)
    └─ loop steps: admit waiting samples into the pool (≤ pool size), ONE fixed-point
       iteration over the pool grouped by action, answer the samples whose loop stopped
       (converged or at max_iter); again, until a request arrives, then back to the top

A batch forms by batch scheduling's rule whether or not loops are running: it closes when
full, or `max_delay_s` after its oldest request arrived. While nothing loops the engine waits
for it; while loops run, the pool's steps fill that window. So a new batch's straight pass
runs at most one loop iteration after its window closes, and a flood of hard inputs fills the
pool and the waiting list, never the path of an easy one. The steps run back to back in the
engine thread, which hands back to the event loop when the window of the oldest queued request
closes (or the queue holds a full batch), a caller gives up, a deadline in flight passes, or
the pool empties; each step's answers are sent as it ends.

Why the window while looping: at a steady arrival rate, answering each arrival after one step
put a straight pass between every two iterations of every loop (measured on the 2-core CPU,
0.5.0, mixed load: a straight pass of 1-3 inputs ~4-6 ms, a loop step ~2 ms, a loop 4-8
steps), so a loop's wall time was mostly other inputs' straight passes; a window lets a few
steps run per straight pass, and batches the straight inputs that arrive meanwhile.

Bounded: samples waiting for the pool count against `max_queue` like queued requests, so a full
service answers 503 instead of holding unbounded straight-pass states. A sample whose caller
gave up, or whose deadline passed, is dropped from the pool before the next step. A failing
straight pass fails its batch; a failing loop step fails the samples in flight (it ran on all
of them); both with a 500, and the scheduler goes on.

The step algorithm itself lives with the engines (service/engines/stepping.py): this module
only orders the calls and answers the requests; it never touches a tensor.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from dataclasses import dataclass

from service.core import Metrics, ServiceError
from service.engines import Engine, EngineInput, StepOutcome, open_stepper
from service.scheduling.batcher import BATCH_FAILED
from service.scheduling.engine_thread import EngineThread
from service.scheduling.request_queue import (
    DEADLINE_PASSED,
    Completed,
    Pending,
    QueueLimits,
    RequestQueue,
)

log = logging.getLogger(__name__)

LOOP_FAILED = "inference failed in a loop step holding this request (details are in the server log)"


@dataclass(frozen=True)
class _Looping:
    """A request past its straight pass, waiting for its loop's answer."""

    pending: Pending
    queue_seconds: float  # arrival → its straight pass
    batch_size: int  # the straight batch it came with


class LoopScheduler:
    def __init__(
        self,
        engine: Engine,
        metrics: Metrics,
        *,
        pool_size: int,
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
        self.pool_size = pool_size
        self._stepper = open_stepper(engine, pool_size)
        self._looping: dict[int, _Looping] = {}  # key → request, from straight pass to answer
        self._keys = itertools.count()
        # When the engine thread hands a loop-step run back to the event loop (time.monotonic();
        # inf: not for a queued request). Written on the event loop (a request queued, a caller
        # gone, stop), read by the engine thread between two steps: one float, no lock needed.
        self._yield_at = math.inf
        self.queue = RequestQueue(
            self.model,
            metrics,
            QueueLimits(max_queue, retry_after_s),
            held=self._waiting_for_the_pool,
            on_queued=self._queued,
        )
        self._thread = EngineThread(self.model)

    @property
    def in_flight(self) -> int:
        """Requests past their straight pass and not answered yet (iterating or waiting)."""
        return len(self._looping)

    def start(self) -> None:
        self._thread.start(self._serve())

    async def stop(self, grace_s: float = 0.0) -> None:
        """The drain of batch scheduling; a loop-step run in the engine thread ends after its
        current step."""
        self._yield_at = -math.inf
        await self.queue.drain(grace_s if self._thread.started else 0.0, self._thread.stop)

    def check_room(self) -> None:
        self.queue.check_room()

    def has_room(self) -> bool:
        return self.queue.has_room()

    async def submit(self, item: EngineInput, deadline: float) -> Completed:
        return await self.queue.submit(item, deadline)

    def _waiting_for_the_pool(self) -> int:
        # Samples beyond the pool's capacity wait with their state: they count as queued.
        return max(0, len(self._looping) - self.pool_size)

    async def _serve(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch:
                await self._straight(batch)
            if self._stepper.busy:
                await self._loop_steps()

    async def _next_batch(self) -> list[Pending]:
        """Idle: wait for a batch as batch scheduling does. Looping: whatever is queued now
        (the loop steps ran while its window was open)."""
        if not self._stepper.busy:
            batch = await self.queue.collect(self._max_batch_size, self._max_delay_s)
        else:
            batch = self.queue.take_queued(self._max_batch_size)
        # Left behind (beyond a full batch): their window has closed already.
        self._yield_at = math.inf if self.queue.empty() else -math.inf
        return batch

    def _queued(self) -> None:
        """A request was queued: the next loop-step run hands back when its batch's window
        closes, or at once when a full batch is waiting."""
        if self.queue.size() >= self._max_batch_size:
            self._yield_at = -math.inf
        elif self._yield_at == math.inf:
            self._yield_at = time.monotonic() + self._max_delay_s

    async def _straight(self, batch: list[Pending]) -> None:
        live = self.queue.drop_dead(batch)
        if not live:
            return
        dispatched = self.queue.dispatch(live)
        keys = [next(self._keys) for _ in live]
        inputs = [pending.item for pending in live]
        try:
            outcome = await self._thread.call(self._stepper.straight, inputs, keys)
        except asyncio.CancelledError:
            raise  # the drain answers the requests it had taken
        except Exception:
            log.exception("model %r: a straight pass of %d failed", self.model, len(live))
            for pending in live:
                self.queue.fail(pending, ServiceError(500, BATCH_FAILED))
            return
        self._observe_sections(outcome.seconds)
        by_key = dict(zip(keys, live, strict=True))
        for key, sample in outcome.answered:
            pending = by_key.pop(key)
            self.queue.answer(pending, sample, dispatched - pending.enqueued, len(live))
        for key in outcome.looped:
            pending = by_key.pop(key)
            self._looping[key] = _Looping(pending, dispatched - pending.enqueued, len(live))
            pending.future.add_done_callback(self._wake_if_given_up)

    async def _loop_steps(self) -> None:
        """Loop steps back to back in the engine thread, at least one, until the queued requests'
        window closes (their straight pass goes next), a caller gives up, the earliest deadline
        in flight passes, or the pool is empty. Each step's answers go out as soon as it ends,
        not when the run ends."""
        evict = self._drop_gone()
        if self._yield_at == -math.inf and self.queue.empty():
            self._yield_at = math.inf  # the give-up that set it is handled by the evictions
        earliest = min((looping.pending.deadline for looping in self._looping.values()),
                       default=math.inf)  # fmt: skip
        try:
            await self._thread.call(self._run_steps, evict, earliest, asyncio.get_running_loop())
        except asyncio.CancelledError:
            raise  # the drain answers what is looping
        except Exception:
            log.exception("model %r: a loop step over %d failed", self.model, len(self._looping))
            for looping in self._looping.values():
                self.queue.fail(looping.pending, ServiceError(500, LOOP_FAILED))
            self._looping.clear()
            self._stepper.clear()  # the engine thread is idle: its call has returned
            self._metrics.observe_loop_step(self.model, 0, 0, 0)

    def _run_steps(self, evict: list[int], earliest: float, loop) -> None:
        """Engine thread: steps until woken (see _loop_steps); answers are handed to the loop."""
        while True:
            outcome = self._stepper.step(evict)
            evict = []
            try:
                loop.call_soon_threadsafe(self._deliver, outcome)
            except RuntimeError:  # the event loop has closed: the service is gone
                return
            if not self._stepper.busy or time.monotonic() >= min(earliest, self._yield_at):
                return

    def _deliver(self, outcome: StepOutcome) -> None:
        self._observe_sections(outcome.seconds)
        self._metrics.observe_loop_step(
            self.model, outcome.stepped, outcome.iterating, outcome.waiting
        )
        for key, sample in outcome.answered:
            looping = self._looping.pop(key, None)
            if looping is not None:  # None: evicted after this sample's last iteration
                pending, queued = looping.pending, looping.queue_seconds
                self.queue.answer(pending, sample, queued, looping.batch_size)

    def _wake_if_given_up(self, future: asyncio.Future) -> None:
        if future.cancelled():  # its deadline passed or the client went away: evict it
            self._yield_at = -math.inf

    def _drop_gone(self) -> list[int]:
        """Keys whose caller gave up or whose deadline passed (504): the step drops them."""
        now, gone = time.monotonic(), []
        for key, looping in self._looping.items():
            pending = looping.pending
            if pending.future.done() or now >= pending.deadline:
                gone.append(key)
        for key in gone:
            self.queue.fail(self._looping.pop(key).pending, ServiceError(504, DEADLINE_PASSED))
        return gone

    def _observe_sections(self, seconds: dict[str, float]) -> None:
        for section, lap in seconds.items():
            self._metrics.observe_section(self.model, section, lap)
