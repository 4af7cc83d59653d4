"""Text requests reach a text model (LSTM + the checkpoint's tokenizer) when one is loaded."""

from __future__ import annotations

import asyncio

import pytest
import torch

from model.actions import ACTIONS
from model.checkpoint import load_checkpoint
from service.app import create_app
from tests.service.helpers import (
    CIFAR_PNGS,
    serving,
    serving_async,
    settings_for,
    train_tokenizer,
    write_cnn_checkpoint,
    write_text_checkpoint,
)

MAX_LENGTH = 8
TEXTS = (
    "a wonderful film",
    "boring story and weak acting with a dull plot and no great cast at all",  # > 8 tokens
    "great",
    "zebra xylophone quantum",  # unknown words only
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_cnn_checkpoint(root)
    write_text_checkpoint(root, max_length=MAX_LENGTH)
    return root


def direct(repo, text: str, action: str | None = None):
    """The LSTM's own output for `text`, tokenized and truncated like the service does."""
    net = load_checkpoint(repo / "imdb").net
    ids = train_tokenizer().encode(text).ids[:MAX_LENGTH]
    forced = None if action is None else torch.tensor([ACTIONS.index(action)])
    with torch.inference_mode():
        out = net(torch.tensor([ids]), forced, lengths=torch.tensor([len(ids)]))
    return out.logits.softmax(dim=1)[0], out


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("action", [None, "loop_all"])
def test_text_answer_equals_the_model(repo, text, action):
    with serving(create_app(settings_for(repo))) as client:
        body = {"text": text} | ({"action": action} if action else {})
        r = client.post("/predict", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    probs, out = direct(repo, text, action)
    assert answer["model"] == "imdb" and answer["model_version"] == "text-1"
    assert answer["class_index"] == int(out.logits.argmax())
    assert answer["action"] == ACTIONS[int(out.actions[0])]
    assert answer["iterations"] == int(out.iterations[0])
    assert answer["layer_evaluations"] == int(out.layer_evaluations[0])
    for label, p in answer["probabilities"].items():
        assert p == pytest.approx(float(probs[("negative", "positive").index(label)]), abs=1e-5)
    n_tokens = len(train_tokenizer().encode(text).ids)
    assert answer["input_tokens"] == n_tokens
    assert answer["truncated"] == (n_tokens > MAX_LENGTH)


def test_images_and_texts_pick_their_model_by_modality(repo):
    with serving(create_app(settings_for(repo))) as client:
        image = client.post("/predict", files={"file": ("x.png", CIFAR_PNGS[0].read_bytes())})
        text = client.post("/predict", json={"text": "great", "model": "imdb"})
        wrong = client.post("/predict", json={"text": "great", "model": "cifar10"})
        models = {m["name"]: m["modality"] for m in client.get("/models").json()["models"]}
    assert image.json()["model"] == "cifar10" and "input_tokens" not in image.json()
    assert text.json()["model"] == "imdb"
    assert wrong.status_code == 400
    assert models == {"cifar10": "image", "imdb": "text"}


@pytest.mark.anyio
async def test_padded_text_batches_answer_like_single_texts(repo):
    async def answers(batch_size: int) -> list[dict]:
        settings = settings_for(repo, max_batch_size=batch_size, max_queue_delay_ms=200)
        async with serving_async(create_app(settings)) as client:
            responses = await asyncio.gather(
                *(client.post("/predict", json={"text": t}) for t in TEXTS)
            )
        return [r.json() for r in responses]

    single, batched = await answers(1), await answers(8)
    assert max(a["batch_size"] for a in batched) > 1
    for one, many in zip(single, batched, strict=True):
        assert one["class_index"] == many["class_index"] and one["action"] == many["action"]
        for label, p in one["probabilities"].items():
            assert many["probabilities"][label] == pytest.approx(p, abs=1e-5)


@pytest.mark.parametrize(
    "text",
    ["", "   \n\t", "\u0000\u0000", "\x01\x02 \x7f", "\u200b\ufeff", "\u0085\u2028 \u00a0"],
)
def test_a_text_without_words_is_422_on_both_protocols(repo, text):
    with serving(create_app(settings_for(repo))) as client:
        r = client.post("/predict", json={"text": text, "model": "imdb"})
        assert r.status_code == 422 and "send" in r.json()["error"], r.text
        body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]}
        r = client.post("/v2/models/imdb/infer", json=body)
        assert r.status_code == 422, r.text
        # A word among the control characters is a text: it is classified.
        r = client.post("/predict", json={"text": f"{text}great{text}", "model": "imdb"})
        assert r.status_code == 200, r.text


def test_forcing_tta_on_a_text_model_is_422_naming_its_actions(repo):
    with serving(create_app(settings_for(repo))) as client:
        r = client.post("/predict", json={"text": "great", "model": "imdb", "action": "tta"})
        assert r.status_code == 422 and "loop_all" in r.json()["error"], r.text
        body = {
            "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["great"]}],
            "parameters": {"action": "tta"},
        }
        r = client.post("/v2/models/imdb/infer", json=body)
        assert r.status_code == 422 and "does not offer" in r.text, r.text
