"""How a model's requests reach its engine, behind one registry: `DYNALAY_LOOP_SCHEDULING`.

Every entry has the signature `(engine, metrics, settings) -> Scheduler`; both hold the model's
request queue (service/scheduling/request_queue.py) and run the engine through the shared stepper
(service/engines/stepping.py):

- "iteration" (default): straight inputs are answered right after the straight pass, loops run
  one fixed-point iteration per step in a bounded pool (service/scheduling/loop_scheduler.py).
- "batch": a batch is answered when its slowest loop has converged (service/scheduling/batcher.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from service.core import Metrics, Settings
from service.engines import Engine, EngineInput
from service.scheduling.batcher import MicroBatcher
from service.scheduling.loop_scheduler import LoopScheduler
from service.scheduling.request_queue import Completed


class Scheduler(Protocol):
    """What the service asks of a model's scheduler."""

    def start(self) -> None:
        """Begin serving (on the running event loop)."""
        ...

    async def stop(self, grace_s: float = 0.0) -> None:
        """Drain: no new request, the accepted ones within `grace_s`, 503 for the rest."""
        ...

    def check_room(self) -> None:
        """Raise the 503 a new request would get now, if any."""
        ...

    def has_room(self) -> bool: ...

    async def submit(self, item: EngineInput, deadline: float) -> Completed:
        """One input's answer; raises ServiceError 503/504/500."""
        ...


SchedulerFactory = Callable[[Engine, Metrics, Settings], Scheduler]


def batch_scheduling(engine: Engine, metrics: Metrics, settings: Settings) -> Scheduler:
    return MicroBatcher(engine, metrics, **_batching(settings))


def iteration_scheduling(engine: Engine, metrics: Metrics, settings: Settings) -> Scheduler:
    return LoopScheduler(
        engine, metrics, pool_size=settings.loop_pool_capacity, **_batching(settings)
    )


SCHEDULERS: dict[str, SchedulerFactory] = {
    "iteration": iteration_scheduling,
    "batch": batch_scheduling,
}


def build_scheduler(engine: Engine, metrics: Metrics, settings: Settings) -> Scheduler:
    name = settings.loop_scheduling
    if name not in SCHEDULERS:
        raise ValueError(f"unknown loop scheduling {name!r}; choose one of {sorted(SCHEDULERS)}")
    return SCHEDULERS[name](engine, metrics, settings)


def _batching(settings: Settings) -> dict:
    return {
        "max_batch_size": settings.max_batch_size,
        "max_delay_s": settings.max_queue_delay_ms / 1000.0,
        "max_queue": settings.max_queue,
        "retry_after_s": settings.retry_after_s,
    }
