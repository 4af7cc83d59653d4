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
