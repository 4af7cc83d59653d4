"""`python -m training report PATH [PATH ...]`: PNG figures + report.json with the numbers.

PATH may be a checkpoint (manifest.json, metrics.json, history.json), a run dir (history.json),
or a folder of run dirs. Several runs (seeds) give Fig 4.3a's reward-per-epoch over seeds.
Figures: action_frequencies.png (Fig 4.1), reward.png (Fig 4.3a), accuracy_compute.png (each
forced action, the agent, the oracle), gate_vs_agent.png (accuracy vs compute), curves.png.
Checkpoints whose agents were trained at different cost weights β add Fig 4.3b's pictures:
beta_sweep.png (action shares and accuracy per β) and tradeoff.png (each β's agent against the
confidence gate of the first checkpoint's backbone — the same backbone when only the agent was
trained, e.g. `fit --init-from CKPT --epochs 0,1,0 --beta B`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from training.evaluation.plots import (
    find_runs,
    has_reward,
    plot_accuracy_compute,
    plot_action_frequencies,
    plot_beta_sweep,
    plot_curves,
    plot_gate_vs_agent,
    plot_perplexity_compute,
    plot_reward,
)


def write_report(paths: list[Path], out: Path | None = None) -> Path:
    runs = find_runs(paths)
    out = Path(out or Path("reports") / Path(paths[0]).resolve().name)
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"runs": [r.label for r in runs]}
    data["action_frequencies"] = plot_action_frequencies(runs[0], out / "action_frequencies.png")
    if any(has_reward(r) for run in runs for r in run.history):
        data["reward"] = plot_reward(runs, out / "reward.png")
    data["curves"] = plot_curves(runs, out / "curves.png")
    main = next((r for r in runs if r.metrics.get("forced")), None)
    if main is not None and "perplexity" in main.metrics:  # a language model
        data["perplexity_compute"] = plot_perplexity_compute(
            main.metrics, out / "perplexity_compute.png"
        )
    elif main is not None:
        data["accuracy_compute"] = plot_accuracy_compute(main.metrics, out / "accuracy_compute.png")
        data["gate_vs_agent"] = plot_gate_vs_agent(main.metrics, out / "gate_vs_agent.png")
        swept = [r for r in runs if r.metrics.get("forced") and "beta" in r.agent]
        if len({r.agent["beta"] for r in swept}) >= 2:
            data["beta_sweep"] = plot_beta_sweep(swept, out)
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", type=Path, nargs="+", help="checkpoint dirs and/or run dirs")
    p.add_argument("--out", type=Path, help="output folder (default reports/<first name>)")


def run(args: argparse.Namespace) -> int:
    out = write_report(args.paths, args.out)
    print(f"wrote report to {out}")
    return 0
