"""How a model's requests reach its engine, behind one registry: `DYNALAY_LOOP_SCHEDULING`.

Every entry has the signature `(engine, metrics, settings) -> MicroBatcher`:

- "iteration" (default): straight inputs are answered right after the straight pass, loops run
  one fixed-point iteration per step in a bounded pool (service/loop_scheduler.py). Needs an
  engine that offers `steps()`; one that does not is served with "batch" (logged).
- "batch": a batch is answered when its slowest loop has converged (service/batcher.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from service.batcher import MicroBatcher
from service.engines import Engine, offers_steps
from service.loop_scheduler import LoopScheduler
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger(__name__)

SchedulerFactory = Callable[[Engine, Metrics, Settings], MicroBatcher]


def batch_scheduling(engine: Engine, metrics: Metrics, settings: Settings) -> MicroBatcher:
    return MicroBatcher(engine, metrics, **_batching(settings))


def iteration_scheduling(engine: Engine, metrics: Metrics, settings: Settings) -> MicroBatcher:
    if not offers_steps(engine):
        log.info(
            "model %r: engine %r has no step interface; its loops are batch-scheduled",
            engine.meta.name,
            engine.name,
        )
        return batch_scheduling(engine, metrics, settings)
    return LoopScheduler(
        engine,  # type: ignore[arg-type]  # offers_steps checked it
        metrics,
        pool_size=settings.loop_pool_capacity,
        **_batching(settings),
    )


SCHEDULERS: dict[str, SchedulerFactory] = {
    "iteration": iteration_scheduling,
    "batch": batch_scheduling,
}


def build_scheduler(engine: Engine, metrics: Metrics, settings: Settings) -> MicroBatcher:
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
