"""Batch scheduling: dynamic micro-batches in front of one model's engine.

Requests wait in the model's bounded request queue (service/scheduling/request_queue.py: admission,
deadlines, the drain, the non-finite guard). A batch closes when it holds `max_batch_size`
requests or when `max_delay_s` has passed since its *oldest* request arrived (Triton's rule).
Requests whose deadline passed, or whose client gave up, are dropped before compute. The batch
then runs on the model's engine thread (engine_thread.py) through the shared stepper to
the end (`run_batch`): it is answered when its slowest loop has converged. A failing batch
fails only its own requests; the loop goes on.

Iteration-level scheduling (loop_scheduler.py) holds the same kind of queue and runs the
same stepper, one loop step at a time.
"""

from __future__ import annotations

import asyncio
import logging

from service.core import Metrics, ServiceError
from service.engines import Engine, EngineInput, open_stepper
from service.scheduling.engine_thread import EngineThread
from service.scheduling.request_queue import Completed, Pending, QueueLimits, RequestQueue

log = logging.getLogger(__name__)

BATCH_FAILED = "inference failed for the batch holding this request (details are in the server log)"


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
        self.queue = RequestQueue(self.model, metrics, QueueLimits(max_queue, retry_after_s))
        self._thread = EngineThread(self.model)
        # Capacity max_batch_size: every batch fits the pool whole, as run_batch's own stepper.
        self._stepper = open_stepper(engine, max_batch_size)

    def start(self) -> None:
        self._thread.start(self._serve())

    async def stop(self, grace_s: float = 0.0) -> None:
        """Take no new request, finish the queued ones within `grace_s`, then stop; whatever
        is still queued or running after the grace period gets a 503."""
        await self.queue.drain(grace_s if self._thread.started else 0.0, self._thread.stop)

    def check_room(self) -> None:
        self.queue.check_room()

    def has_room(self) -> bool:
        return self.queue.has_room()

    async def submit(self, item: EngineInput, deadline: float) -> Completed:
        return await self.queue.submit(item, deadline)

    async def _serve(self) -> None:
        while True:
            batch = await self.queue.collect(self._max_batch_size, self._max_delay_s)
            live = self.queue.drop_dead(batch)
            if live:
                await self._execute(live)

    async def _execute(self, batch: list[Pending]) -> None:
        dispatched = self.queue.dispatch(batch)
        inputs = [pending.item for pending in batch]
        try:
            output = await self._thread.call(self._stepper.run, inputs)
        except asyncio.CancelledError:
            raise  # the drain answers the requests it had taken
        except Exception:
            log.exception("model %r: a batch of %d failed", self.model, len(batch))
            for pending in batch:
                self.queue.fail(pending, ServiceError(500, BATCH_FAILED))
            return
        for section, seconds in output.section_seconds.items():
            self._metrics.observe_section(self.model, section, seconds)
        for pending, sample in zip(batch, output.samples, strict=True):
            self.queue.answer(pending, sample, dispatched - pending.enqueued, len(batch))
