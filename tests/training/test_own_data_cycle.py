"""Your own data end to end: fit a few steps on a generated image folder (with a corrupt and an
unreadable file) and on a generated JSONL, serve the checkpoints in-process, and get answers
labelled with the folder's / the file's class names, equal to the trained model's own output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from model.checkpoint import load_checkpoint
from service.app import create_app
from tests.service.helpers import serving, settings_for
from training.cli import main
from training.data.image_decode import decode_pixels
from training.data.synthetic import write_image_folder
from training.data.text.synthetic import synthetic_review

CLASSES = ("circle", "square", "stripes")
TEXT_CLASSES = ("meh", "wow")


@pytest.fixture(scope="module")
def folder_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("own-images")
    data = write_image_folder(root / "data", CLASSES, n_train=16, n_val=None)
    (data / "train" / "square" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (data / "train" / "circle" / "gone.png").symlink_to(root / "nowhere.png")
    out = root / "models" / "shapes"
    argv = ["fit", "--dry-run", "--dataset", "imagefolder", "--data-dir", str(data)]
    assert main([*argv, "--out", str(out), "--run-dir", str(root / "run"), "--quiet"]) == 0
    return {"data": data, "out": out, "models": root / "models"}


def test_the_checkpoint_records_classes_statistics_and_skipped_files(folder_model, capsys):
    ckpt = load_checkpoint(folder_model["out"])
    assert ckpt.classes == CLASSES and ckpt.config.n_classes == 3
    pre = ckpt.preprocessing
    assert pre["kind"] == "image" and pre["image_size"] == [32, 32] and len(pre["std"]) == 3
    report = json.loads((folder_model["out"] / "data.json").read_text())
    assert {s["path"] for s in report["skipped"]} == {
        "train/square/broken.jpg",
        "train/circle/gone.png",
    }
    assert report["val_from_train"] and report["val"] == dict.fromkeys(CLASSES, 3)  # 20 % of 16


def test_served_answers_use_the_folder_class_names(folder_model):
    ckpt = load_checkpoint(folder_model["out"])
    pre = ckpt.preprocessing
    mean, std = (torch.tensor(pre[k]).view(3, 1, 1) for k in ("mean", "std"))
    paths = [folder_model["data"] / "train" / name / "0003.png" for name in CLASSES]
    paths = [p for p in paths if p.exists()] or sorted(folder_model["data"].rglob("*.png"))[:3]
    with serving(create_app(settings_for(folder_model["models"]))) as client:
        answers = [client.post("/predict", files={"file": p.read_bytes()}) for p in paths]
    for path, answer in zip(paths, answers, strict=True):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pixels = torch.from_numpy(decode_pixels(path.read_bytes(), 32, 32)).float() / 255.0
        with torch.inference_mode():
            out = ckpt.net(((pixels - mean) / std)[None])
        assert body["model"] == "shapes" and set(body["probabilities"]) == set(CLASSES)
        assert body["label"] == CLASSES[int(out.logits.argmax())]
        top = float(out.logits.softmax(1).max())
        assert body["probabilities"][body["label"]] == pytest.approx(top, abs=1e-5)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("own-texts")
    rng = np.random.default_rng(0)
    data = root / "data"
    data.mkdir()
    for split, n in (("train", 48), ("val", 16)):
        rows = [
            {"text": synthetic_review(i % 2, rng), "label": TEXT_CLASSES[i % 2]} for i in range(n)
        ]
        lines = [json.dumps(row) for row in rows] + ['{"text": "no label"}']
        (data / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    out = root / "models" / "reviews"
    argv = ["fit", "--preset", "text-tiny", "--dataset", "textfile", "--data-dir", str(data)]
    assert main([*argv, "--out", str(out), "--run-dir", str(root / "run"), "--quiet"]) == 0
    return {"out": out, "models": root / "models"}


def test_a_jsonl_trained_model_answers_with_its_labels(text_model):
    ckpt = load_checkpoint(text_model["out"])
    assert ckpt.classes == TEXT_CLASSES and ckpt.preprocessing["kind"] == "text"
    tokenizer = Tokenizer.from_file(str(text_model["out"] / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == ckpt.config.vocab_size
    text = "A wonderful, brilliant film. I loved the charming cast."
    with serving(create_app(settings_for(text_model["models"]))) as client:
        answer = client.post("/predict", json={"text": text})
    assert answer.status_code == 200, answer.text
    ids = torch.tensor([tokenizer.encode(text).ids[: ckpt.preprocessing["max_length"]]])
    with torch.inference_mode():
        out = ckpt.net(ids, None, lengths=torch.tensor([ids.shape[1]]))
    assert answer.json()["label"] == TEXT_CLASSES[int(out.logits.argmax())]
    assert set(answer.json()["probabilities"]) == set(TEXT_CLASSES)
