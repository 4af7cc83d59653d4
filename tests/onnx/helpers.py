"""Tiny exported checkpoints and fixture inputs for the ONNX tests (CPU, seconds).

No __init__.py in tests/onnx on purpose: as a package it would be importable as `onnx` and
shadow the real library once pytest puts tests/ on sys.path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from model.checkpoint import save_checkpoint
from model.config import ModelConfig
from model.network import DynaLayNet, build_model
from service.engines import EngineInput
from training.export_onnx import export_onnx

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
EMBEDDED = ROOT / "checkpoints"
CNN = ModelConfig(arch="cnn", n_classes=10, width=8)
CNN_CAPPED = ModelConfig(arch="cnn", n_classes=10, width=8, max_iter=4)  # best-iterate path
# The fast recipes' backbone: frozen whitening conv and a BatchNorm stem.
CNN_WHITEN = ModelConfig(
    arch="cnn",
    n_classes=10,
    stem="whiten",
    width=16,
    stem_width=8,
    loop_convs=1,
    tta_action=True,
    agent_choices=("straight", "loop_l1", "loop_all", "tta"),  # the exported agent bars one
    agent_inputs="confidence",  # and reads the confidence alone (CNN keeps the whole profile)
)

# The staged layout (model/staged.py): stages of their own shapes, each swept from its own state.
CNN_STAGED = ModelConfig(
    arch="cnn", n_classes=10, stem="staged", stage_widths=(8, 16, 16), max_iter=5, tta_action=True
)


def shipped_like(checkpoint: Path, **tiny: object) -> ModelConfig:
    """The embedded checkpoint's model config (dropout, solver, tol, ...), only smaller."""
    card = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    return ModelConfig.from_dict({**card["model"], **tiny})


# Configured like the embedded IMDB model (embedding dropout included), at a tiny size.
LSTM = shipped_like(
    EMBEDDED / "imdb", vocab_size=100, embed_dim=16, hidden_size=16, agent_hidden=16
)
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGE_PREP = {"kind": "image", "image_size": [32, 32], "mean": MEAN, "std": STD}
TEXT_PREP = {"kind": "text", "tokenizer": "tokenizer.json", "max_length": 64}


def image_inputs(n_noise: int = 10) -> list[np.ndarray]:
    """The six CIFAR-10 fixture PNGs, normalised, then seeded noise images: (3, 32, 32) each."""
    images = [_normalised_png(path) for path in sorted(FIXTURES.glob("cifar10_*.png"))]
    rng = np.random.default_rng(0)
    return images + [rng.standard_normal((3, 32, 32)).astype(np.float32) for _ in range(n_noise)]


def text_inputs(n: int = 16, max_len: int = 12) -> list[np.ndarray]:
    """Token id rows of lengths 1..max_len (ids 2..99; 0 pads, 1 is unknown)."""
    rng = np.random.default_rng(0)
    lengths = [max_len, 1, *rng.integers(1, max_len + 1, size=n - 2)]
    return [rng.integers(2, 100, size=int(t)).astype(np.int64) for t in lengths]


def inputs_for(config: ModelConfig) -> list[np.ndarray]:
    return image_inputs() if config.arch == "cnn" else text_inputs()


def as_batch(data: Sequence[np.ndarray], action: int | None = None) -> list[EngineInput]:
    return [EngineInput(item, action) for item in data]


def write_exported(directory: Path, config: ModelConfig, name: str, seed: int) -> Path:
    """Build, give the agent a non-trivial last layer, save, export. Returns the directory."""
    torch.manual_seed(seed)
    net = build_model(config).eval()
    if config.arch == "cnn" and config.stem == "whiten":
        _fit_whitened_stem(net, seed)
    _spread_agent(net, inputs_for(config), seed)
    text = config.arch == "lstm"
    save_checkpoint(
        directory,
        net,
        name=name,
        version="onnx-test-1",
        classes=[f"c{i}" for i in range(config.n_classes)],
        preprocessing=TEXT_PREP if text else IMAGE_PREP,
        extra_files={"tokenizer.json": tokenizer_json()} if text else None,
    )
    export_onnx(directory, quiet=True)
    return directory


def tokenizer_json() -> bytes:
    """A word-level tokenizer: "w2" … "w99" → 2 … 99, anything else → 1, 0 is padding."""
    vocab = {"[PAD]": 0, "[UNK]": 1, **{f"w{i}": i for i in range(2, 100)}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    return tokenizer.to_str().encode()


def _fit_whitened_stem(net: DynaLayNet, seed: int) -> None:
    """Whitening filters from images and BatchNorm statistics far from their defaults, so a
    stem run in training mode (batch statistics) would answer differently."""
    gen = torch.Generator().manual_seed(seed)
    images = 2.0 * torch.randn(64, 3, 32, 32, generator=gen) + 0.5
    with torch.no_grad():
        net.backbone.init_whitening(images)
        net.train()
        for _ in range(5):
            net.backbone.stem(images)
    net.eval()


def _spread_agent(net: DynaLayNet, data: list[np.ndarray], seed: int) -> None:
    """Random last agent layer, standardised over `data`, so the fixtures pick several actions.

    The agent starts with a zero last layer (every sample → action 0); random weights alone
    still send near-identical profiles to one action, so each action's logit is centred and
    scaled over the fixture batch.
    """
    x, lengths = _collate(data)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        hidden = net.agent.net[:-1](net.straight(x, lengths).profile)  # (B, hidden)
        weight = torch.randn(net.n_actions, hidden.shape[1], generator=gen)
        scores = hidden @ weight.T  # (B, n_actions)
        mean, std = scores.mean(0), scores.std(0).clamp_min(1e-6)
        net.agent.net[-1].weight.copy_(weight / std[:, None])
        net.agent.net[-1].bias.copy_(-mean / std)


def _collate(data: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
    if data[0].dtype != np.int64:
        return torch.from_numpy(np.stack(data)), None
    lengths = [len(row) for row in data]
    ids = np.zeros((len(data), max(lengths)), dtype=np.int64)
    for i, row in enumerate(data):
        ids[i, : len(row)] = row
    return torch.from_numpy(ids), torch.tensor(lengths)


def _normalised_png(path: Path) -> np.ndarray:
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
    x = (pixels - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))
