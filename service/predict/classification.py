"""One classification, whichever protocol asked: POST /predict, OIP over HTTP, or gRPC.

Each protocol decodes its request on its own (inputs/payload.py, oip/inference.py), then
hands the samples here: the forced action is validated (once, by the model that is to take
it), the model's queue is asked for room before any decoding is paid for, the blocking
preprocessing (image decoding, tokenizing) runs in a worker thread, every sample is submitted
to the model's scheduler, and the answered predictions are counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from model.actions import ACTIONS, looped_layers
from service.engines import EngineInput
from service.inputs import EncodedText
from service.repository import ServedModel
from service.scheduling import Completed

Prepared = np.ndarray | EncodedText  # one sample as the model takes it: an image or token ids
Prepare = Callable[[], Sequence[Prepared]]  # blocking (decode, tokenize): runs in a thread


@dataclass(frozen=True)
class Classified:
    prepared: list[Prepared]  # each sample as preprocessed, in the order sent
    answers: list[Completed]  # the same order


async def classify(
    served: ServedModel, samples: Prepare, action: object, deadline: float
) -> Classified:
    """Answer every sample `samples()` yields, with `action` forced (None: the agent's)."""
    action_id = served.action_id(action)
    served.scheduler.check_room()
    in_progress = served.metrics.requests_in_progress.labels(served.name)
    in_progress.inc()
    try:
        prepared = await _preprocess(served, samples)
        answers = await asyncio.gather(
            *(served.scheduler.submit(EngineInput(_data(p), action_id), deadline) for p in prepared)
        )
    finally:
        in_progress.dec()
    for completed in answers:
        _observe(served, completed)
    return Classified(prepared, list(answers))


async def _preprocess(served: ServedModel, samples: Prepare) -> list[Prepared]:
    started = time.perf_counter()
    prepared = list(await asyncio.to_thread(samples))
    served.metrics.observe_section(served.name, "preprocess", time.perf_counter() - started)
    return prepared


def _data(prepared: Prepared) -> np.ndarray:
    return prepared.ids if isinstance(prepared, EncodedText) else prepared


def _observe(served: ServedModel, completed: Completed) -> None:
    """Record an answered prediction (only answered ones: the counts then match the 200s)."""
    sample = completed.sample
    served.metrics.observe_prediction(
        served.name,
        ACTIONS[sample.action],
        looped_layers(sample.action),
        sample.iterations,
        sample.converged,
        sample.layer_evaluations,
        sample.macs,
    )
