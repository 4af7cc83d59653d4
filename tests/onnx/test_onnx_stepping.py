"""Both engines on the one step interface: the shared stepper run from the ONNX sessions and
from the PyTorch modules answers like the model alone, however the samples are interleaved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.checkpoint import load_checkpoint
from service.engines import ENGINES, EngineInput, SampleResult, Stepper, run_batch
from tests.onnx.helpers import inputs_for

PROB_TOL = 1e-4
ALL = pytest.mark.parametrize("checkpoint", ["cnn", "lstm", "cnn_capped"], indirect=True)


def interleaved(engine, items: list[EngineInput], capacity: int) -> dict[int, SampleResult]:
    """Arrivals in batches of 3, two loop steps between batches, a small pool."""
    stepper = Stepper(engine.spec(), capacity=capacity)
    answers: dict[int, SampleResult] = {}
    for start in range(0, len(items), 3):
        keys = list(range(start, min(start + 3, len(items))))
        answers.update(stepper.straight([items[k] for k in keys], keys).answered)
        for _ in range(2):
            answers.update(stepper.step().answered)
    while stepper.busy:
        answers.update(stepper.step().answered)
    return answers


@ALL
@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_the_stepper_answers_like_the_model_alone(checkpoint: Path, runtime: str) -> None:
    reference = ENGINES["torch"](checkpoint, "cpu")
    engine = reference if runtime == "torch" else ENGINES["onnx"](checkpoint, "cpu")
    data = inputs_for(load_checkpoint(checkpoint).config)
    actions = ([None, None, 3, None, 1, 2] * len(data))[: len(data)]  # agent-decided and forced
    items = [EngineInput(x, a) for x, a in zip(data, actions, strict=True)]
    answers = interleaved(engine, items, capacity=4)
    answered_actions = set()
    for key, item in enumerate(items):
        want, got = run_batch(reference.spec(), [item]).samples[0], answers[key]
        assert (got.action, got.class_index) == (want.action, want.class_index)
        assert abs(got.iterations - want.iterations) <= 1
        assert np.abs(np.subtract(got.probabilities, want.probabilities)).max() <= PROB_TOL
        answered_actions.add(got.action)
    assert len(answered_actions) >= 3  # the agent-decided and forced inputs cover the loops
