"""Helpers for the service tests: tiny real checkpoints, reference inputs, clients, stubs.

Everything runs on CPU in seconds and reads only tests/fixtures and tmp dirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import torch
import torch.nn.functional as F
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.trainers import WordLevelTrainer

from model.actions import THESIS_ACTIONS
from model.checkpoint import save_checkpoint
from model.config import ModelConfig
from model.loops import ChainedLoop
from model.macs import ActionMacs, Linear
from model.network import build_model
from service.core import Settings
from service.engines import ENGINES, EngineInput, EngineSpec, ModelMeta, SampleResult, collate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CIFAR_PNGS = sorted(FIXTURES.glob("cifar10_*.png"))
CIFAR_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
TINY_CNN = ModelConfig(arch="cnn", n_classes=10, width=8, tta_action=True)  # all five actions
IMAGE_PREP = {"kind": "image", "image_size": [32, 32], "mean": CIFAR_MEAN, "std": CIFAR_STD}


def write_cnn_checkpoint(directory: Path, name: str = "cifar10", seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = build_model(TINY_CNN).eval()
    return save_checkpoint(
        directory / name,
        net,
        name=name,
        version="test-1",
        classes=CIFAR_CLASSES,
        preprocessing=IMAGE_PREP,
    )


def settings_for(model_dir: Path, **overrides) -> Settings:
    # Explicit values: a developer's DYNALAY_* environment must not leak into the tests.
    base = dict(
        model_dir=model_dir, device="cpu", api_key=None, max_queue_delay_ms=1.0, grpc_port=0
    )
    return Settings(**{**base, **overrides})


def png_bytes(path: Path) -> bytes:
    return path.read_bytes()


def encode(image: Image.Image, fmt: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def reference_input(path: Path) -> torch.Tensor:
    """The normalised (1, 3, 32, 32) tensor the model should see for a 32×32 RGB PNG."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    x = (pixels - np.asarray(CIFAR_MEAN, np.float32)) / np.asarray(CIFAR_STD, np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]


def forward_answers(engine, batch: Sequence[EngineInput], action: int | None) -> list[SampleResult]:
    """`batch` through the model's own `DynaLayNet.forward` (every input forced to `action`,
    or the agent's choice for None), as the engine would answer it: the reference the shared
    stepper is held to."""
    x, lengths = engine.spec().collate(batch)
    actions = None if action is None else torch.full((len(batch),), action, dtype=torch.long)
    with torch.inference_mode():
        out = engine.net(x, actions=actions, lengths=lengths)
    probabilities = out.logits.float().softmax(dim=1).tolist()  # (B, C)
    columns = (out.logits.argmax(dim=1), out.actions, out.iterations, out.converged)
    classes, chosen, iterations, converged = (t.tolist() for t in columns)
    evaluations, macs = out.layer_evaluations.tolist(), out.macs.tolist()
    rows = zip(
        classes, probabilities, chosen, iterations, converged, evaluations, macs, strict=True
    )
    return [SampleResult(c, tuple(p), a, n, bool(ok), e, m) for c, p, a, n, ok, e, m in rows]


def wait_ready(client: TestClient, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError(f"not ready after {timeout_s} s: {client.get('/readyz').json()}")


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[TestClient]:
    """A TestClient with the lifespan running and the models ready."""
    with TestClient(app) as client:
        wait_ready(client)
        yield client


@contextlib.asynccontextmanager
async def serving_async(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An async client on the app's event loop, for truly concurrent requests."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            deadline = time.monotonic() + 60
            while (await client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "not ready"
                await asyncio.sleep(0.02)
            yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving_on_loopback(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """The app under a real uvicorn on 127.0.0.1 in a thread (real sockets, for real clients
    such as tritonclient); yields the base URL once the models are ready."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", workers=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert thread.is_alive(), "the server stopped during start-up"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "not ready after 60 s"
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the server did not stop"


STUB_PROBABILITIES = (0.75, 0.25)  # what the stub answers every input
STUB_MACS = ActionMacs(Linear(1000.0), (Linear(0.0),) * 3, (Linear(0.0),) * 3, Linear(0.0))


class StubParts:
    """Network parts without a model, for the shared stepper: every layer is the identity (a
    forced loop stops after one iteration), the head answers STUB_PROBABILITIES and the agent
    keeps every input straight."""

    loops = ChainedLoop()

    def stem(self, x, lengths):
        return (x.new_zeros(x.shape[0], 1),)  # u (B, 1)

    def injection(self, index, below, inj):
        return inj

    def layer(self, index, h, inj):
        return h

    def head(self, h, inj):
        return torch.tensor(STUB_PROBABILITIES).log().expand(h.shape[0], -1)  # (B, 2)

    def profile(self, states, logits, inj):
        return logits

    def agent(self, profile):
        choice = torch.zeros(profile.shape[0], dtype=torch.long)
        return F.one_hot(choice, len(THESIS_ACTIONS)).float()  # (B, 4): straight


class StubEngine:
    """An engine without a model: answers class 0 after `delay_s`, or waits for `gate`."""

    name = "stub"
    device = "cpu"
    precision = "fp32"
    layout = "nchw"

    def __init__(self, directory: Path, delay_s: float = 0.0, fail_when=None) -> None:
        self.meta = ModelMeta("stub", "0", "cnn", ("a", "b"), IMAGE_PREP, directory)
        self.delay_s = delay_s
        self.gate: threading.Event | None = None  # when set up, a batch waits for it
        self.entered = threading.Event()  # a batch has started at least once
        self.fail_when = fail_when  # predicate on the batch: raise instead of answering
        self.batches: list[int] = []  # the size of every batch that reached the engine

    def warmup(self) -> None:
        pass

    def spec(self) -> EngineSpec:
        cpu = torch.device("cpu")
        return EngineSpec(StubParts(), self._collate, "fixed_point", 1e-3, 5, cpu, STUB_MACS)

    def _collate(self, batch: Sequence[EngineInput]):
        # A batch's straight pass begins here: the place to hold it, pace it or fail it.
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=30)
        time.sleep(self.delay_s)
        self.batches.append(len(batch))
        if self.fail_when is not None and self.fail_when(batch):
            raise RuntimeError("stub failure")
        return collate(batch, "image", torch.device("cpu"))


def png_claiming(width: int, height: int) -> bytes:
    """A ~60-byte PNG whose header claims width×height pixels (a decompression-bomb probe)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


TINY_LSTM = ModelConfig(arch="lstm", n_classes=2, vocab_size=100, embed_dim=16, hidden_size=16)
SENTENCES = (
    "a wonderful film with a great cast",
    "a dull and boring film with a weak plot",
    "great acting and a wonderful story",
    "boring story and weak acting",
)


def train_tokenizer() -> Tokenizer:
    """A tiny word-level tokenizer; [PAD] gets id 0, the model's padding id."""
    tokenizer = Tokenizer(WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    trainer = WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"])
    tokenizer.train_from_iterator(SENTENCES, trainer)
    return tokenizer


def write_text_checkpoint(directory: Path, name: str = "imdb", max_length: int = 8) -> Path:
    torch.manual_seed(0)
    net = build_model(TINY_LSTM).eval()
    tokenizer_json = train_tokenizer().to_str().encode()
    return save_checkpoint(
        directory / name,
        net,
        name=name,
        version="text-1",
        classes=("negative", "positive"),
        preprocessing={"kind": "text", "tokenizer": "tokenizer.json", "max_length": max_length},
        extra_files={"tokenizer.json": tokenizer_json},
    )


class PacedParts:
    """A real network's parts, each layer evaluation taking `engine.layer_s` seconds at least,
    raising while `engine.fail` is set: loops that last long enough to act on mid-loop."""

    def __init__(self, inner, engine: PacedEngine) -> None:
        self.inner, self.engine = inner, engine
        self.loops = inner.loops

    def stem(self, x, lengths):
        return self.inner.stem(x, lengths)

    def injection(self, index, below, inj):
        return self.inner.injection(index, below, inj)

    def layer(self, index, h, inj):
        self.engine.layer_calls += 1
        if self.engine.fail:
            raise RuntimeError("/secret/path: simulated kernel failure")
        time.sleep(self.engine.layer_s)
        return self.inner.layer(index, h, inj)

    def head(self, h, inj):
        return self.inner.head(h, inj)

    def profile(self, states, logits, inj):
        return self.inner.profile(states, logits, inj)

    def agent(self, profile):
        return self.inner.agent(profile)


class PacedEngine:
    """The real torch engine of `directory`, stepped through `PacedParts`."""

    def __init__(self, directory: Path, layer_s: float = 0.0) -> None:
        self.inner = ENGINES["torch"](directory, "cpu")
        self.name, self.device, self.meta = "paced", "cpu", self.inner.meta
        self.precision, self.layout = self.inner.precision, self.inner.layout
        self.layer_s = layer_s
        self.fail = False
        self.layer_calls = 0

    def warmup(self) -> None:
        self.inner.warmup()  # one-off costs of a first call must not count against deadlines

    def spec(self):
        import dataclasses

        inner = self.inner.spec()
        return dataclasses.replace(inner, parts=PacedParts(inner.parts, self))


SLOW_LOOPS_CNN = ModelConfig(arch="cnn", n_classes=10, width=8, tol=1e-12, max_iter=40)


def write_never_converging_cnn(directory: Path, name: str = "cifar10") -> Path:
    """A tiny CNN whose loops never meet their tolerance: every loop runs max_iter (40) steps."""
    torch.manual_seed(0)
    net = build_model(SLOW_LOOPS_CNN).eval()
    return save_checkpoint(
        directory / name, net, name=name, version="slow-1", classes=CIFAR_CLASSES,
        preprocessing=IMAGE_PREP,
    )  # fmt: skip
