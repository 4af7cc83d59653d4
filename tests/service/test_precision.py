"""Precision as a setting: what a CPU runs, bf16 answers against fp32, and the parity gate.

    python -m pytest -q tests/service/test_precision.py

bf16 tests run only where the CPU computes bf16 natively (oneDNN and avx512_bf16 / amx_bf16);
the gate's refusal uses a crafted checkpoint whose two top logits tie in bf16 and not in fp32.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import ValidationError

from model.calibration import CALIBRATION, CalibrationSet, load_calibration
from model.checkpoint import CheckpointError, add_files, load_checkpoint, save_checkpoint
from model.network import ModuleParts, build_model
from model.onnx_parts import part_names
from model.solvers import relative_residual
from service.app import create_app, precision_policy
from service.core import Settings
from service.engines import (
    CastParts,
    EngineInput,
    Mode,
    OnnxEngine,
    OnnxPart,
    OnnxParts,
    ParityReport,
    PrecisionError,
    PrecisionPolicy,
    SampleResult,
    Stepper,
    TorchEngine,
    agreement,
    cpu_flags,
    engine_factories,
    fastest_passing,
    quantize_parts,
    run_batch,
    runnable,
    unsupported,
)
from service.inputs import ImageSpec, decode_image
from tests.service.helpers import (
    CIFAR_CLASSES,
    CIFAR_PNGS,
    IMAGE_PREP,
    TINY_CNN,
    reference_input,
    serving,
    settings_for,
)

CPU = torch.device("cpu")
BF16 = not unsupported("bf16", CPU)
needs_bf16 = pytest.mark.skipif(not BF16, reason=f"no native bf16 here: {unsupported('bf16', CPU)}")
EMBEDDED = Path(__file__).resolve().parents[2] / "checkpoints" / "cifar10"


def calibration_set(n: int = 32, seed: int = 0) -> CalibrationSet:
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8))
    return CalibrationSet(images, torch.from_numpy(rng.integers(0, 10, size=n)))


def write_calibrated(root: Path, net=None, name: str = "cifar10") -> Path:
    """A tiny CNN checkpoint that ships a calibration set."""
    torch.manual_seed(0)
    net = net if net is not None else build_model(TINY_CNN).eval()
    directory = save_checkpoint(
        root / name, net, name=name, version="test-1", classes=CIFAR_CLASSES,
        preprocessing=IMAGE_PREP,
    )  # fmt: skip
    add_files(directory, {CALIBRATION: calibration_set().to_bytes()})
    return directory


def tie_in_bf16_net():
    """Classes 0 and 1 only; class 1's head row is class 0's × (1 + 2⁻¹²): in fp32 class 1 wins
    wherever the logit is positive (always: the row reads the positive max-pooled features), in
    bf16 (8 mantissa bits) the two rows round to the same weights, the logits tie and argmax
    says class 0."""
    torch.manual_seed(0)
    net = build_model(TINY_CNN).eval()
    fc = net.backbone.fc  # (10, 2W): [mean-pooled | max-pooled] features
    width = fc.in_features // 2
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.fill_(-100.0)
        fc.bias[:2] = 0.0
        fc.weight[0, width:] = 0.125  # a power of two: exact in bf16
        fc.weight[1, width:] = 0.125 * (1 + 2**-12)
    return net


def samples(labels, actions) -> list[SampleResult]:
    return [SampleResult(c, (1.0,), a, 0, True, 3, 0) for c, a in zip(labels, actions, strict=True)]


# ---- what this machine runs --------------------------------------------------------------


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_bf16_on_a_cpu_needs_native_support():
    assert "avx512_bf16" in unsupported("bf16", CPU, flags=frozenset({"avx2", "avx512f"}))
    if torch.backends.mkldnn.is_available():
        assert unsupported("bf16", CPU, flags=frozenset({"amx_bf16"})) == ""
        assert unsupported("bf16", CPU, flags=frozenset({"avx512_bf16"})) == ""
    assert "CUDA only" in unsupported("fp16", CPU, flags=frozenset({"amx_bf16"}))
    assert unsupported("fp32", CPU) == ""
    assert runnable(CPU, frozenset({"avx2"})) == []


def test_precision_settings_default_to_auto_and_are_checked(monkeypatch):
    for name in ("DYNALAY_PRECISION", "DYNALAY_LAYOUT"):  # the test defaults pin fp32, nchw
        monkeypatch.delenv(name)
    assert (Settings().precision, Settings().layout) == ("auto", "auto")
    monkeypatch.setenv("DYNALAY_PRECISION", "BF16")
    monkeypatch.setenv("DYNALAY_PARITY_MIN_LABEL_AGREEMENT", "0.9")
    policy = precision_policy(Settings())
    assert (policy.precision, policy.layout, policy.min_label_agreement) == ("bf16", "auto", 0.9)
    monkeypatch.setenv("DYNALAY_PRECISION", "fp8")
    with pytest.raises(ValidationError):
        Settings()


# ---- the gate's arithmetic ---------------------------------------------------------------


def test_agreement_counts_labels_and_actions_separately():
    reference = samples([0, 1, 2, 3], [0, 0, 4, 4])
    candidate = samples([0, 1, 2, 9], [0, 4, 4, 4])
    assert agreement(reference, candidate) == (0.75, 0.75)


def test_the_gate_names_what_fails_and_auto_takes_the_fastest_that_passes():
    policy = PrecisionPolicy("auto", "nchw", min_label_agreement=0.995, min_action_agreement=0.99)
    fp32 = ParityReport(Mode("fp32", "nchw"), 512, 1.0, 1.0, seconds=2.0)
    bf16 = ParityReport(Mode("bf16", "nhwc"), 512, 0.996, 0.99, seconds=0.5)
    flips = ParityReport(Mode("bf16", "nchw"), 512, 0.99, 1.0, seconds=0.4)
    assert bf16.failures(policy) == []
    assert flips.failures(policy) == ["99.00% of labels agree with fp32 (needs ≥ 99.50%)"]
    assert fastest_passing([fp32, bf16, flips], policy) == Mode("bf16", "nhwc")
    assert fastest_passing([fp32, flips], policy) == Mode("fp32", "nchw")
    assert fastest_passing([flips], policy) is None


def test_residuals_of_bf16_states_are_computed_in_fp32():
    fz, z = torch.randn(4, 8, 3, 3), torch.randn(4, 8, 3, 3)
    low_fz, low_z = fz.bfloat16(), z.bfloat16()
    residual = relative_residual(low_fz, low_z)
    assert residual.dtype == torch.float32
    torch.testing.assert_close(residual, relative_residual(low_fz.float(), low_z.float()))


# ---- the calibration file ----------------------------------------------------------------


def test_a_calibration_set_round_trips_through_the_manifest(tmp_path):
    directory = write_calibrated(tmp_path)
    loaded = load_calibration(directory)
    assert loaded is not None and torch.equal(loaded.images, calibration_set().images)
    x = loaded.normalised(IMAGE_PREP)  # (N, 3, 32, 32), as the image decoder normalises
    mean, std = torch.tensor(IMAGE_PREP["mean"]), torch.tensor(IMAGE_PREP["std"])
    want = (loaded.images[0, :, 0, 0].float() / 255 - mean) / std
    torch.testing.assert_close(x[0, :, 0, 0], want)
    (directory / CALIBRATION).write_bytes(b"x" + (directory / CALIBRATION).read_bytes()[1:])
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(directory)


def test_a_checkpoint_without_a_set_has_none(tmp_path):
    directory = write_calibrated(tmp_path)
    assert load_calibration(directory) is not None
    torch.manual_seed(0)
    bare = save_checkpoint(
        tmp_path / "bare", build_model(TINY_CNN), name="bare", version="1",
        classes=CIFAR_CLASSES, preprocessing=IMAGE_PREP,
    )  # fmt: skip
    assert load_calibration(bare) is None


# ---- engines in bf16 ----------------------------------------------------------------------


@needs_bf16
def test_cast_parts_compute_in_bf16_and_hand_back_fp32():
    torch.manual_seed(0)
    net = build_model(TINY_CNN).eval()
    x = torch.randn(4, 3, 32, 32)
    parts, low = ModuleParts(net), CastParts(ModuleParts(net), "bf16", CPU)
    with torch.inference_mode():
        (u,), (u_low,) = parts.stem(x, None), low.stem(x, None)
        h, h_low = parts.layer(0, u, (u,)), low.layer(0, u, (u,))
    assert u_low.dtype == h_low.dtype == torch.float32
    assert not torch.equal(h_low, h)  # bf16 inside: not the fp32 result
    torch.testing.assert_close(h_low, h, atol=0.1, rtol=0.05)  # but close to it


def test_both_schedulings_of_a_bf16_engine_compute_in_bf16_with_fp32_loops(tmp_path):
    # bf16 autocast runs (emulated) on any CPU: this checks what runs, not how fast.
    loaded = load_checkpoint(write_calibrated(tmp_path))
    data = [reference_input(path)[0].numpy() for path in CIFAR_PNGS[:4]]
    inputs = [EngineInput(x, a) for x, a in zip(data, (None, 1, 2, 3), strict=True)]
    fp32 = run_batch(TorchEngine(loaded, "cpu").spec(), inputs).samples
    spec = TorchEngine(loaded, "cpu", Mode("bf16")).spec()
    assert isinstance(spec.parts, CastParts) and spec.parts.precision == "bf16"
    batch = run_batch(spec, inputs).samples  # batch scheduling
    stepper = Stepper(spec, capacity=2)  # iteration scheduling, a pool smaller than the batch
    straight = stepper.straight(inputs, range(len(inputs)))
    stepped = dict(straight.answered)
    while stepper.busy:
        outcome = stepper.step()
        stepped.update(outcome.answered)
    assert any(a.probabilities != b.probabilities for a, b in zip(batch, fp32, strict=True))
    for key, want in enumerate(batch):
        got = stepped[key]
        assert (got.action, got.class_index) == (want.action, want.class_index)
        assert abs(got.iterations - want.iterations) <= 1
        np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-2)
        assert got.probabilities == pytest.approx(fp32[key].probabilities, abs=0.05)


@needs_bf16
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_bf16_answers_of_the_embedded_model_match_fp32_on_the_fixtures(layout):
    loaded = load_checkpoint(EMBEDDED)
    spec = ImageSpec.from_preprocessing(loaded.preprocessing)
    inputs = [EngineInput(decode_image(p.read_bytes(), spec, 10**6)) for p in CIFAR_PNGS]
    want = run_batch(TorchEngine(loaded, "cpu").spec(), inputs).samples
    got = run_batch(TorchEngine(loaded, "cpu", Mode("bf16", layout)).spec(), inputs).samples
    assert [s.class_index for s in got] == [s.class_index for s in want]
    assert [s.action for s in got] == [s.action for s in want]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=0.05)


def test_the_nhwc_layout_answers_as_nchw(tmp_path):
    directory = write_calibrated(tmp_path)
    factories = {
        layout: engine_factories(None, PrecisionPolicy("fp32", layout))["torch"]
        for layout in ("nchw", "nhwc")
    }
    assert factories["nhwc"](directory, "cpu").layout == "nhwc"
    x = load_calibration(directory).normalised(IMAGE_PREP).numpy()
    batch = [EngineInput(image) for image in x]
    # Each engine re-lays the shared net only when built; build each right before its run.
    want = run_batch(factories["nchw"](directory, "cpu").spec(), batch).samples
    got = run_batch(factories["nhwc"](directory, "cpu").spec(), batch).samples
    assert [s.class_index for s in got] == [s.class_index for s in want]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


# ---- the gate at load ---------------------------------------------------------------------


def load_torch(directory: Path, **policy) -> object:
    return engine_factories(None, PrecisionPolicy(**policy))["torch"](directory, "cpu")


@needs_bf16
def test_bf16_that_flips_labels_is_refused_and_auto_falls_back_to_fp32(tmp_path):
    directory = write_calibrated(tmp_path, tie_in_bf16_net())
    with pytest.raises(PrecisionError, match=r"refused by the parity gate.*0\.00% of labels"):
        load_torch(directory, precision="bf16", layout="nchw")
    assert load_torch(directory, precision="auto", layout="nchw").precision == "fp32"


@needs_bf16
def test_bf16_that_answers_like_fp32_serves(tmp_path):
    directory = write_calibrated(tmp_path)
    engine = load_torch(
        directory, precision="bf16", layout="auto", min_label_agreement=0.0,
        min_action_agreement=0.0,
    )  # fmt: skip
    assert (engine.precision, engine.layout in ("nchw", "nhwc")) == ("bf16", True)


def test_without_a_calibration_set_auto_is_fp32_and_bf16_is_refused(model_dir):
    directory = model_dir / "cifar10"  # the shared tiny checkpoint ships no set
    assert load_torch(directory, precision="auto", layout="nchw").precision == "fp32"
    with pytest.raises(PrecisionError, match="no calibration set|cannot run here"):
        load_torch(directory, precision="bf16", layout="nchw")


def test_the_onnx_engine_refuses_bf16_and_the_torch_engine_int8(model_dir):
    onnx = engine_factories(None, PrecisionPolicy("bf16", "nchw"))["onnx"]
    with pytest.raises(PrecisionError, match="fp32 or int8"):
        onnx(model_dir / "cifar10", "cpu")
    with pytest.raises(PrecisionError, match="DYNALAY_ENGINE=onnx"):
        load_torch(model_dir / "cifar10", precision="int8", layout="nchw")


# ---- int8 (the onnx engine) -----------------------------------------------------------------


def load_onnx(directory: Path, cache: Path, **policy) -> object:
    return engine_factories(cache, PrecisionPolicy(**policy))["onnx"](directory, "cpu")


def test_int8_quantizes_the_convolutions_and_answers_close_to_fp32(tmp_path):
    directory = write_calibrated(tmp_path)
    fp32 = load_onnx(directory, tmp_path / "cache", precision="fp32", layout="nchw")
    int8 = load_onnx(
        directory, tmp_path / "cache", precision="int8", layout="nchw",
        min_label_agreement=0.0, min_action_agreement=0.0,
    )  # fmt: skip
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    images = calibration_set(8, seed=1).normalised(IMAGE_PREP).numpy()
    batch = [EngineInput(x, action) for x in images for action in (0, 3, None)]
    want, got = (run_batch(e.spec(), batch).samples for e in (fp32, int8))
    pairs = zip(want, got, strict=True)
    gaps = [np.abs(np.subtract(a.probabilities, b.probabilities)).max() for a, b in pairs]
    assert 0 < max(gaps) < 0.05  # quantized (not the fp32 graphs), and close to them


def test_int8_that_fails_the_gate_is_refused_naming_what_failed(tmp_path):
    # The embedded model's int8 agrees with fp32 on 99.6% of its calibration labels: a gate
    # asking for all of them must refuse it, and auto must fall back to fp32.
    strict = dict(layout="nchw", min_label_agreement=1.0, min_action_agreement=1.0)
    with pytest.raises(PrecisionError, match=r"int8 refused by the parity gate.*of labels"):
        load_onnx(EMBEDDED, tmp_path / "cache", precision="int8", **strict)


def test_int8_graphs_quantize_stem_and_layers_and_leave_head_profile_agent_fp32(tmp_path):
    import onnx

    directory = write_calibrated(tmp_path)
    loaded = load_checkpoint(directory)
    config = loaded.config
    fp32 = OnnxEngine(loaded, "cpu", tmp_path / "cache")
    paths = {name: fp32.export.part_path(name) for name in part_names(config)}
    sessions = {
        name: OnnxPart(path, ["CPUExecutionProvider"], "cpu") for name, path in paths.items()
    }
    images = calibration_set().normalised(IMAGE_PREP)
    out = quantize_parts(
        paths, lambda parts: OnnxParts(parts, config), sessions, config, images, tmp_path / "q"
    )
    for name, path in out.items():
        ops = {node.op_type for node in onnx.load(path).graph.node}
        quantized = name.startswith(("stem", "layer"))
        assert ({"QuantizeLinear", "DequantizeLinear"} <= ops) == quantized, name
        assert (path == paths[name]) == (not quantized)
    assert [fed_dequantized(c) for c in convolutions(out["stem"])][:2] == [False, True]


def convolutions(path: Path) -> list[tuple[object, dict]]:
    """Each Conv of a graph, in order, with the graph's producer of every tensor."""
    import onnx

    nodes = onnx.load(path).graph.node
    producer = {output: node for node in nodes for output in node.output}
    return [(node, producer) for node in nodes if node.op_type == "Conv"]


def fed_dequantized(conv: tuple[object, dict]) -> bool:
    """Whether a Conv's input comes out of a DequantizeLinear (an int8 convolution in QDQ)."""
    node, producer = conv
    source = producer.get(node.input[0])
    return source is not None and source.op_type == "DequantizeLinear"


# ---- what the service shows --------------------------------------------------------------


@needs_bf16
def test_the_precision_in_force_shows_in_models_metadata_and_metrics(tmp_path):
    write_calibrated(tmp_path)
    settings = settings_for(
        tmp_path, precision="bf16", layout="nchw", parity_min_label_agreement=0.0,
        parity_min_action_agreement=0.0,
    )  # fmt: skip
    with serving(create_app(settings)) as client:
        (info,) = client.get("/models").json()["models"]
        metadata = client.get("/v2/models/cifar10").json()
        exposition = client.get("/metrics").text
    assert (info["precision"], info["layout"], metadata["precision"]) == ("bf16", "nchw", "bf16")
    assert 'model="cifar10",precision="bf16"' in exposition


@needs_bf16
def test_an_explicit_precision_that_fails_the_gate_keeps_the_service_unready(tmp_path):
    write_calibrated(tmp_path, tie_in_bf16_net())
    app = create_app(settings_for(tmp_path, precision="bf16", layout="nchw"))
    with TestClient(app) as client:
        error = _load_error(client)
    assert "PrecisionError" in error and "parity gate" in error and "labels" in error


@needs_bf16
def test_auto_serves_fp32_when_bf16_fails_the_gate(tmp_path):
    write_calibrated(tmp_path, tie_in_bf16_net())
    with serving(create_app(settings_for(tmp_path, precision="auto", layout="nchw"))) as client:
        (info,) = client.get("/models").json()["models"]
        answer = client.post("/predict", files={"file": ("x.png", CIFAR_PNGS[0].read_bytes())})
    assert info["precision"] == "fp32"
    assert answer.status_code == 200 and answer.json()["class_index"] == 1  # fp32's answer


def _load_error(client: TestClient, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = client.get("/healthz")
        if health.status_code == 503:
            return health.json()["error"]
        time.sleep(0.02)
    raise AssertionError("the model loaded")
