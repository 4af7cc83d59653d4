"""The ONNX engine answers exactly like the PyTorch engine (CPU provider, fixture inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.actions import N_ACTIONS
from model.checkpoint import load_checkpoint
from service.engines import ENGINES, BatchOutput, run_batch
from tests.onnx.helpers import as_batch, inputs_for

PROB_TOL = 1e-4
ALL = pytest.mark.parametrize(
    "checkpoint", ["cnn", "lstm", "cnn_capped", "cnn_whiten", "cnn_staged"], indirect=True
)


_ENGINES: dict[tuple[Path, str], object] = {}  # loaded once per checkpoint and runtime


def _engine(checkpoint: Path, name: str):
    if (checkpoint, name) not in _ENGINES:
        _ENGINES[checkpoint, name] = ENGINES[name](checkpoint, "cpu")
    return _ENGINES[checkpoint, name]


def _both(
    checkpoint: Path, action: int | None = None, n: int | None = None
) -> tuple[BatchOutput, BatchOutput]:
    batch = as_batch(inputs_for(load_checkpoint(checkpoint).config)[:n], action)
    return run_batch(_engine(checkpoint, "torch").spec(), batch), run_batch(
        _engine(checkpoint, "onnx").spec(), batch
    )


def _assert_same(torch_out: BatchOutput, onnx_out: BatchOutput) -> None:
    assert len(onnx_out.samples) == len(torch_out.samples)
    for want, got in zip(torch_out.samples, onnx_out.samples, strict=True):
        assert got.action == want.action
        assert got.class_index == want.class_index
        assert np.abs(np.subtract(got.probabilities, want.probabilities)).max() <= PROB_TOL
        assert abs(got.iterations - want.iterations) <= 1
        if got.iterations == want.iterations:
            assert got.converged == want.converged
            assert got.layer_evaluations == want.layer_evaluations
            assert got.macs == want.macs


@ALL
def test_agent_decides_the_same(checkpoint: Path) -> None:
    torch_out, onnx_out = _both(checkpoint)
    _assert_same(torch_out, onnx_out)
    # The fixture is only a test of the loops if the agent spreads samples over the actions.
    assert len({s.action for s in torch_out.samples}) >= 3
    assert set(onnx_out.section_seconds) == set(torch_out.section_seconds)


@ALL
@pytest.mark.parametrize("action", range(N_ACTIONS))
def test_forced_actions_match(checkpoint: Path, action: int) -> None:
    if action >= load_checkpoint(checkpoint).net.n_actions:
        pytest.skip("only the whitened CNN offers `tta`")
    torch_out, onnx_out = _both(checkpoint, action, n=8)
    _assert_same(torch_out, onnx_out)
    assert {s.action for s in onnx_out.samples} == {action}


@pytest.mark.parametrize("checkpoint", ["cnn_capped"], indirect=True)
def test_capped_loops_return_the_best_iterate(checkpoint: Path) -> None:
    _, onnx_out = _both(checkpoint, action=1, n=8)
    assert any(not s.converged for s in onnx_out.samples)  # the path under test is taken
    assert all(s.iterations == 4 for s in onnx_out.samples if not s.converged)


@pytest.mark.parametrize("checkpoint", ["cnn", "lstm"], indirect=True)
def test_warmup_and_single_samples(checkpoint: Path) -> None:
    engine = _engine(checkpoint, "onnx")
    engine.warmup()
    data = inputs_for(load_checkpoint(checkpoint).config)[:2]
    single = [run_batch(engine.spec(), as_batch([item])).samples[0] for item in data]
    pair = run_batch(engine.spec(), as_batch(data)).samples
    for alone, batched in zip(single, pair, strict=True):  # batching never changes an answer
        assert alone.action == batched.action and alone.class_index == batched.class_index
        assert abs(alone.iterations - batched.iterations) <= 1
