"""A tiny text fit → evaluate → serve cycle on a synthetic aclImdb-layout fixture: the HTTP
answer for a review is the trained LSTM's own output on the checkpoint's tokenizer."""

import json
import os

import pytest
import torch
from tokenizers import Tokenizer

from model.actions import ACTIONS, THESIS_ACTIONS
from model.checkpoint import load_checkpoint
from service.app import create_app
from tests.service.helpers import serving, settings_for
from training.cli import main
from training.data.text.synthetic import write_imdb_layout, write_wikitext_layout

MAX_LENGTH = 24  # the text-tiny preset's


@pytest.fixture(scope="module")
def imdb(tmp_path_factory):
    root = tmp_path_factory.mktemp("imdb")
    data = write_imdb_layout(root / "data", n_train=64, n_test=32)
    out = root / "models" / "imdb"
    argv = ["fit", "--preset", "text-tiny", "--dataset", "imdb", "--data-dir", str(data)]
    assert main([*argv, "--out", str(out), "--run-dir", str(root / "run"), "--quiet"]) == 0
    return {"data": data, "out": out, "models": root / "models"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("DYNALAY_"):
            monkeypatch.delenv(name)


def test_fit_writes_a_text_checkpoint_with_its_tokenizer(imdb):
    ckpt = load_checkpoint(imdb["out"])
    assert ckpt.config.arch == "lstm" and ckpt.classes == ("negative", "positive")
    assert ckpt.preprocessing == {
        "kind": "text",
        "tokenizer": "tokenizer.json",
        "max_length": MAX_LENGTH,
    }
    tokenizer = Tokenizer.from_file(str(imdb["out"] / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == ckpt.config.vocab_size
    assert {"accuracy", "forced", "oracle", "action_frequencies"} <= set(ckpt.metrics)
    history = json.loads((imdb["out"] / "history.json").read_text())
    assert [r["phase"] for r in history] == ["backbone", "agent", "joint"]


def test_init_from_keeps_the_starting_checkpoints_tokenizer(imdb, tmp_path):
    # The start weights' embedding rows are indexed by its token ids: a second fit that
    # trained its own tokenizer (here a smaller vocabulary) would scramble them.
    out = tmp_path / "fit2"
    argv = ["fit", "--preset", "text-tiny", "--dataset", "imdb", "--data-dir", str(imdb["data"])]
    argv += ["--init-from", str(imdb["out"]), "--tokenizer-vocab", "200", "--epochs", "0,1,0"]
    assert main([*argv, "--out", str(out), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    first = (imdb["out"] / "tokenizer.json").read_bytes()
    assert (out / "tokenizer.json").read_bytes() == first
    start, fit2 = load_checkpoint(imdb["out"]).net, load_checkpoint(out).net
    torch.testing.assert_close(fit2.backbone.embed.weight, start.backbone.embed.weight)


def test_evaluate_reproduces_the_fit_metrics(imdb, tmp_path, capsys):
    before = load_checkpoint(imdb["out"]).metrics
    out = tmp_path / "eval.json"
    argv = ["evaluate", str(imdb["out"]), "--data-dir", str(imdb["data"]), "--output", str(out)]
    assert main(argv) == 0
    assert "imdb test (n=32)" in capsys.readouterr().out
    written = json.loads(out.read_text())
    for key in ("accuracy", "mean_layer_evaluations", "straight_accuracy"):
        assert written[key] == pytest.approx(before[key], abs=1e-6), key
    assert written["action_frequencies"] == pytest.approx(before["action_frequencies"])


def _direct(ckpt_dir, text: str, action: str | None):
    ckpt = load_checkpoint(ckpt_dir)
    all_ids = Tokenizer.from_file(str(ckpt_dir / "tokenizer.json")).encode(text).ids
    ids = torch.tensor([all_ids[:MAX_LENGTH]])
    forced = None if action is None else torch.tensor([ACTIONS.index(action)])
    with torch.inference_mode():
        out = ckpt.net(ids, forced, lengths=torch.tensor([ids.shape[1]]))
    return out, len(all_ids)


@pytest.mark.parametrize("action", [None, "loop_l1_l2"])
def test_served_answer_equals_the_trained_model(imdb, action):
    texts = [
        "A wonderful, brilliant film.<br /><br />I loved the charming cast.",
        "Boring. " * 40,  # over max_length: truncated and reported
    ]
    with serving(create_app(settings_for(imdb["models"]))) as client:
        answers = [
            client.post("/predict", json={"text": t} | ({"action": action} if action else {}))
            for t in texts
        ]
    for text, r in zip(texts, answers, strict=True):
        assert r.status_code == 200, r.text
        body = r.json()
        out, n_tokens = _direct(imdb["out"], text, action)
        probs = out.logits.softmax(1)[0]
        assert body["model"] == "imdb" and body["label"] in ("negative", "positive")
        assert body["class_index"] == int(out.logits.argmax())
        assert body["action"] == ACTIONS[int(out.actions[0])]
        assert body["layer_evaluations"] == int(out.layer_evaluations[0])
        assert body["probabilities"][body["label"]] == pytest.approx(
            float(probs[body["class_index"]]), abs=1e-5
        )
        assert body["input_tokens"] == n_tokens
        assert body["truncated"] == (n_tokens > MAX_LENGTH)
    assert answers[1].json()["truncated"] is True


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"text": ""}, 422),
        ({"text": " \n\t "}, 422),
        ({"text": "<br /><br />"}, 422),  # cleaned to nothing by the tokenizer's normalizer
        ({"text": "great " * 100}, 413),  # over max_text_bytes
        ({"text": 12}, 422),
    ],
)
def test_bad_text_inputs(imdb, body, status):
    settings = settings_for(imdb["models"], max_text_bytes=200)
    with serving(create_app(settings)) as client:
        r = client.post("/predict", json=body)
    assert r.status_code == status, r.text


def test_language_model_fit_and_evaluate_report_perplexity(tmp_path, capsys):
    data = write_wikitext_layout(tmp_path / "data", n_lines=30)
    out = tmp_path / "lm"
    argv = ["fit", "--preset", "text-tiny", "--dataset", "wikitext2", "--data-dir", str(data)]
    assert main([*argv, "--out", str(out), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.config.task == "lm" and ckpt.preprocessing["kind"] == "lm"
    assert ckpt.config.n_classes == len(ckpt.classes) == ckpt.config.vocab_size
    m = ckpt.metrics
    assert set(m["forced"]) == set(THESIS_ACTIONS) and m["layer_evaluations_per_token"] >= 3
    assert 1.0 < m["perplexity"] < len(ckpt.classes)  # learned something
    assert main(["evaluate", str(out), "--data-dir", str(data), "--no-write"]) == 0
    assert "perplexity" in capsys.readouterr().out
    # The report draws perplexity per action for a language model (no accuracy/gate plots).
    report = tmp_path / "report"
    assert main(["report", str(out), str(tmp_path / "run"), "--out", str(report)]) == 0
    written = json.loads((report / "report.json").read_text())
    assert (report / "perplexity_compute.png").read_bytes()[:4] == b"\x89PNG"
    ppl = written["perplexity_compute"]["perplexity"]
    assert ppl == pytest.approx(
        [*(m["forced"][a]["perplexity"] for a in THESIS_ACTIONS), m["perplexity"]]
    )
    assert "gate_vs_agent" not in written
