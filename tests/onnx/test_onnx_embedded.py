"""DYNALAY_ENGINE=onnx serves the embedded checkpoints as they ship (no export step), like torch.

The embedded checkpoints carry no ONNX parts: the engine exports them on load into the cache,
verified against PyTorch, and must then answer the same labels and actions as the torch engine
on the CIFAR-10 fixture images and on real-sounding reviews.
"""

from __future__ import annotations

import base64
from pathlib import Path

from service.app import create_app
from service.core import Settings
from tests.onnx.helpers import EMBEDDED, FIXTURES
from tests.service.helpers import serving

IMAGES = sorted(FIXTURES.glob("cifar10_*.png"))
REVIEWS = (
    "One of the best films I have seen in years. The acting is superb and the story moving.",
    "A complete waste of time. The plot makes no sense and the dialogue is painfully bad.",
    "It was fine, I guess. Some good moments, but far too long and the ending fell flat.",
    "I laughed, I cried, I loved every minute of it. Highly recommended!",
    "Terrible. Wooden acting, a boring script and cheap effects; avoid at all costs.",
    "The first half drags, but the last hour is gripping and beautifully shot.",
)


def _answers(engine: str, cache: Path) -> list[dict]:
    settings = Settings(
        model_dir=EMBEDDED, engine=engine, device="cpu", onnx_cache_dir=cache, grpc_port=0
    )
    with serving(create_app(settings)) as client:
        engines = {m["name"]: m["engine"] for m in client.get("/models").json()["models"]}
        assert engines == {"cifar10": engine, "imdb": engine}
        bodies = [{"image": base64.b64encode(p.read_bytes()).decode()} for p in IMAGES]
        bodies += [{"text": review} for review in REVIEWS]
        responses = [client.post("/predict", json=body) for body in bodies]
    assert [r.status_code for r in responses] == [200] * len(bodies), responses[-1].text
    return [r.json() for r in responses]


def test_onnx_serves_the_embedded_models_like_torch(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    want, got = _answers("torch", cache), _answers("onnx", cache)
    assert sorted(p.name.rsplit("-", 1)[0] for p in cache.iterdir()) == ["cifar10", "imdb"]
    for w, g in zip(want, got, strict=True):
        assert (g["model"], g["label"], g["action"]) == (w["model"], w["label"], w["action"])
        assert abs(g["iterations"] - w["iterations"]) <= 1
        for label in w["probabilities"].keys() & g["probabilities"].keys():
            assert abs(g["probabilities"][label] - w["probabilities"][label]) <= 1e-4
    assert {w["label"] for w in want if w["model"] == "imdb"} == {"negative", "positive"}
