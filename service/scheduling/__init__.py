"""How requests reach an engine: the bounded request queue, the engine thread, the
micro-batcher, the loop scheduler (continuous batching at loop boundaries), and the choice
between them.
"""

from service.scheduling.batcher import MicroBatcher
from service.scheduling.loop_scheduler import LoopScheduler
from service.scheduling.request_queue import (
    NON_FINITE,
    SHUTTING_DOWN,
    Completed,
    QueueLimits,
    RequestQueue,
)
from service.scheduling.scheduler import Scheduler, build_scheduler

__all__ = [
    "NON_FINITE",
    "SHUTTING_DOWN",
    "Completed",
    "LoopScheduler",
    "MicroBatcher",
    "QueueLimits",
    "RequestQueue",
    "Scheduler",
    "build_scheduler",
]
