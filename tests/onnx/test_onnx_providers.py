"""Execution providers: CPU here; CUDA asked for but not delivered is an error, never a fallback."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from model.checkpoint import load_checkpoint
from service.engines import (
    ENGINES,
    OnnxEngineError,
    check_providers,
    execution_providers,
    run_batch,
)
from tests.onnx.helpers import as_batch, inputs_for

NO_CUDA_EP = "CUDAExecutionProvider" not in ort.get_available_providers()


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_cpu_sessions_run_on_the_cpu_provider(onnx_repo: Path, name: str) -> None:
    engine = ENGINES["onnx"](onnx_repo / name, "cpu")
    assert engine.providers[0] == "CPUExecutionProvider"
    assert (engine.name, engine.device) == ("onnx", "cpu")


@pytest.mark.skipif(not NO_CUDA_EP, reason="this onnxruntime has the CUDA provider")
def test_cuda_without_the_gpu_wheel_is_refused() -> None:
    with pytest.raises(OnnxEngineError, match="onnxruntime-gpu"):
        execution_providers(torch.device("cuda"))


def test_a_silent_cpu_fallback_is_refused() -> None:
    class FellBack:  # what a session reports when CUDA failed to load
        def get_providers(self) -> list[str]:
            return ["CPUExecutionProvider"]

    cuda = [("CUDAExecutionProvider", {"device_id": "0"}), "CPUExecutionProvider"]
    with pytest.raises(OnnxEngineError, match="silent fallback"):
        check_providers(FellBack(), cuda, Path("onnx/stem.onnx"))


@pytest.mark.gpu
@pytest.mark.skipif(NO_CUDA_EP or not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_cuda_matches_torch_on_cuda(onnx_repo: Path, name: str) -> None:
    batch = as_batch(inputs_for(load_checkpoint(onnx_repo / name).config))
    want = run_batch(ENGINES["torch"](onnx_repo / name, "cuda").spec(), batch).samples
    engine = ENGINES["onnx"](onnx_repo / name, "cuda")
    assert engine.providers[0] == "CUDAExecutionProvider"
    got = run_batch(engine.spec(), batch).samples
    for w, g in zip(want, got, strict=True):
        assert (w.action, w.class_index) == (g.action, g.class_index)
        assert (
            max(abs(a - b) for a, b in zip(w.probabilities, g.probabilities, strict=True)) <= 1e-4
        )
        assert abs(w.iterations - g.iterations) <= 1
