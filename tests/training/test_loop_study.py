import json

from model.checkpoint import load_checkpoint
from training.cli import main


def test_loop_study_writes_table_sweep_and_figure(trained, tmp_path):
    out = tmp_path / "study"
    argv = ["loop-study", f"tiny={trained['out']}", "--data-dir", str(trained["data"])]
    assert main([*argv, "--max-iterations", "2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())["tiny"]
    sweep = results["accuracy_vs_iterations"]
    assert set(sweep) == {"loop_l1", "loop_l1_l2", "loop_all"}
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in sweep.values())
    assert results["n"] == 64 and "| tiny |" in (out / "table.md").read_text()
    assert (out / "accuracy_vs_iterations.png").stat().st_size > 1000
    # the sweep leaves the model's own solver settings alone
    assert load_checkpoint(trained["out"]).config.tol > 0
