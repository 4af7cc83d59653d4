import json

from training.cli import main

FIGURES = ("action_frequencies", "reward", "curves", "accuracy_compute", "gate_vs_agent")


def test_report_writes_pngs_and_their_json(trained, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(trained["out"]), str(trained["run"]), "--out", str(out)]) == 0
    for name in FIGURES:
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    data = json.loads((out / "report.json").read_text())
    assert set(FIGURES) <= set(data) and len(data["runs"]) == 2
    assert len(data["reward"]) == 3  # two runs + their mean
    assert list(data["action_frequencies"]["test"]) == [
        "straight",
        "loop_l1",
        "loop_l1_l2",
        "loop_all",
    ]


def test_checkpoints_at_different_betas_give_the_sweep_figures(trained, tmp_path):
    # Agent-only runs from one checkpoint (frozen backbone), as for reports/runs/imdb-beta.
    outs = []
    for beta in (0.5, 0.0):
        out = tmp_path / f"beta{beta}"
        argv = ["fit", "--dry-run", "--dataset", "cifar10", "--data-dir", str(trained["data"])]
        argv += ["--init-from", str(trained["out"]), "--epochs", "0,1,0", "--beta", str(beta)]
        argv += ["--out", str(out), "--run-dir", str(tmp_path / f"run{beta}"), "--quiet"]
        assert main(argv) == 0
        outs.append(out)
    report = tmp_path / "report"
    assert main(["report", *map(str, outs), "--out", str(report)]) == 0
    for name in ("beta_sweep", "tradeoff"):
        assert (report / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    points = json.loads((report / "report.json").read_text())["beta_sweep"]["points"]
    assert [q["beta"] for q in points] == [0.0, 0.5]  # sorted, whatever the argument order
    for q, out in zip(points, reversed(outs), strict=True):
        metrics = json.loads((out / "metrics.json").read_text())
        assert q["accuracy"] == metrics["accuracy"]
        assert q["action_frequencies"] == {
            a: metrics["action_frequencies"][a] for a in q["action_frequencies"]
        }


def test_a_single_checkpoint_has_no_sweep(trained, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(trained["out"]), "--out", str(out)]) == 0
    assert "beta_sweep" not in json.loads((out / "report.json").read_text())
    assert not (out / "beta_sweep.png").exists()
