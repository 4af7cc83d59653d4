"""Every experiment end to end with its dry-run recipe (synthetic data, seconds), through the CLI:
results.json has the expected fields with sane values, the PNGs exist, the page renders them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from model.actions import THESIS_ACTIONS
from training.cli import main
from training.experiments.registry import EXPERIMENTS

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Runs an experiment once per module on first use; returns its results.json."""
    root = tmp_path_factory.mktemp("reports")
    done: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in done:
            assert main(["experiment", name, "--dry-run", "--out", str(root), "--quiet"]) == 0
            done[name] = json.loads((root / name / "results.json").read_text())
        return done[name]

    get.root = root
    return get


def _common(doc: dict, root: Path, name: str) -> None:
    assert doc["experiment"] == name and doc["mode"] == "dry_run"
    assert doc["command"].startswith(f"python -m training experiment {name} ")
    assert "--dry-run" in doc["command"]
    assert doc["config_file"] == f"configs/experiments/{name}.json"
    hw = doc["hardware"]
    assert hw["device"] == "cpu" and hw["cpu"] and hw["summary"].startswith("CPU: ")
    assert doc["train_config"]["data"]["dataset"] == "synthetic"
    assert doc["wall_seconds"] > 0 and doc["figures"]
    for fig in doc["figures"]:
        assert (root / name / fig).read_bytes()[:8] == PNG, fig


def _prob(x) -> bool:
    return x is not None and 0.0 <= x <= 1.0


def test_table41(reports):
    doc = reports("table41")
    _common(doc, reports.root, "table41")
    rows = {r["model"]: r for r in doc["results"]["rows"]}
    agents = ["dynalay", "dynalay_all_actions"]
    assert list(rows) == ["plain", "loop_all", "deq_solver", *agents, "gate", "oracle"]
    for name in ("plain", "loop_all", "deq_solver", *agents):
        r = rows[name]
        assert _prob(r["accuracy"]) and r["test_loss"] > 0 and r["ms_per_image"] > 0
        assert r["train_forward_seconds"] > 0 and r["train_backward_seconds"] > 0
        assert r["train_forward_seconds"] + r["train_backward_seconds"] <= r["train_seconds"]
        assert r["epochs"] >= 1 and r["mean_layer_evaluations"] >= 3
    assert rows["plain"]["mean_layer_evaluations"] == 3
    assert (
        rows["loop_all"]["mean_layer_evaluations"]
        > 3
        < rows["deq_solver"]["mean_layer_evaluations"]
    )
    assert "DEQ with solvers" in rows["deq_solver"]["label"]
    assert rows["deq_solver"]["model_config"]["solver"] == "anderson"
    # The timed agent path is the same computation as training.evaluation.metrics' evaluation.
    m = doc["results"]["dynalay_metrics"]
    assert rows["dynalay"]["accuracy"] == pytest.approx(m["accuracy"])
    assert rows["dynalay"]["mean_layer_evaluations"] == pytest.approx(m["mean_layer_evaluations"])
    assert rows["oracle"]["accuracy"] >= max(f["accuracy"] for f in m["forced"].values())
    assert rows["oracle"]["ms_per_image"] is None and rows["gate"]["train_seconds"] is None
    assert 0.0 <= rows["gate"]["threshold"] <= 1.01 and _prob(rows["gate"]["accuracy"])
    ratios = doc["results"]["ratios"]
    assert ratios["plain"]["train_seconds_vs_plain"] == pytest.approx(1.0)
    assert ratios["deq_solver"]["ms_per_image_vs_deq_solver"] == pytest.approx(1.0)
    t = doc["results"]["targets"]
    assert isinstance(t["met_above_gate"], bool) and t["agent_share_of_loop_all_evaluations"] > 0
    assert list(doc["results"]["targets_by_arm"]) == agents
    assert doc["results"]["targets_by_arm"]["dynalay"] == t


def test_fig41(reports):
    doc = reports("fig41")
    _common(doc, reports.root, "fig41")
    res = doc["results"]
    freq = res["action_frequencies"]
    assert list(freq) == list(THESIS_ACTIONS) and sum(freq.values()) == pytest.approx(1.0)
    per_epoch = res["per_epoch"]
    assert per_epoch["epochs"] == [1, 2, 3]
    assert all(len(v) == 3 for v in per_epoch["frequencies"].values())


def test_fig43a(reports):
    doc = reports("fig43a")
    _common(doc, reports.root, "fig43a")
    res = doc["results"]
    assert len(res["seeds"]) >= 3 and res["phases"] == ["backbone", "agent", "joint"]
    seeds = {k: v for k, v in res["test_reward"].items() if k != "mean"}
    assert len(seeds) == len(res["seeds"]) and "mean" in res["test_reward"]
    for s in seeds.values():
        assert s["epochs"] == [1, 2, 3] and all(-2.0 <= r <= 0.5 for r in s["reward"])
    for s in res["train_reward"].values():
        assert s["epochs"] == [2, 3] and all(math.isfinite(r) for r in s["reward"])


def test_fig43b(reports):
    doc = reports("fig43b")
    _common(doc, reports.root, "fig43b")
    res = doc["results"]
    assert len(res["betas"]) >= 5 and res["shared_backbone"]
    assert len(res["points"]) == len(res["betas"]) * len(res["estimators"])
    assert {q["estimator"] for q in res["points"]} == set(res["estimators"])
    for q in res["points"]:
        assert sum(q["action_frequencies"].values()) == pytest.approx(1.0)
        assert _prob(q["accuracy"]) and q["mean_layer_evaluations"] >= 3
        assert _prob(q["best_gate_accuracy_at_same_compute"])
    curve = res["backbone"]["gate_curves"]["loop_all"]
    assert len(curve["accuracy"]) == len(curve["mean_layer_evaluations"]) > 5
    assert {"beta_sweep.png", "tradeoff.png"} <= set(doc["figures"])


def test_fig44(reports):
    doc = reports("fig44")
    _common(doc, reports.root, "fig44")
    models = doc["results"]["models"]
    assert [m["model"] for m in models] == [0, 1, 2, 3]
    for m in models:
        assert len(m["runs"]) >= 3
        for r in m["runs"]:
            assert r["loss"] > 0 and _prob(r["accuracy"]) and r["n"] > 0
    evals = [m["runs"][0]["mean_layer_evaluations"] for m in models]
    assert evals[0] == 3 and all(e > 3 for e in evals[1:])


def test_page_renders_every_experiment(reports):
    for name in EXPERIMENTS:
        reports(name)
    assert main(["experiment", "page", "--out", str(reports.root)]) == 0
    page = (reports.root / "README.md").read_text()
    assert "Not run yet" not in page and page.count("dry run on synthetic data") == len(EXPERIMENTS)
    for name in EXPERIMENTS:
        assert f'<a id="{name}"></a>' in page and f"experiment {name} " in page
    for link in [line.split("](")[1].rstrip(")") for line in page.splitlines() if "![" in line]:
        assert (reports.root / link).exists(), link
    assert "Against the thesis" in page and "- Hardware: CPU: " in page
