"""Language-model evaluation: perplexity of the agent's path and of every forced action, with
the compute spent. Each layer evaluation runs over every token of a sequence, so the mean layer
evaluations per sequence are also the layer evaluations per token."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

from model.actions import THESIS_ACTIONS
from model.network import DynaLayNet, ForwardOutput
from training.data.text.tokenizer import PAD_ID


class _Tally:
    """Running sums for one path (agent, straight or a forced action)."""

    def __init__(self) -> None:
        self.nll = 0.0  # summed over real tokens
        self.right = 0
        self.tokens = 0
        self.evaluations = 0  # per sequence, summed
        self.iterations = 0
        self.converged = 0
        self.sequences = 0

    def add(self, logits: torch.Tensor, y: torch.Tensor, out: ForwardOutput | None) -> None:
        valid = y != PAD_ID  # (B, T)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none")
        self.nll += float(nll[valid.flatten()].sum())
        self.right += int(((logits.argmax(-1) == y) & valid).sum())
        self.tokens += int(valid.sum())
        self.sequences += y.shape[0]
        if out is not None:
            self.evaluations += int(out.layer_evaluations.sum())
            self.iterations += int(out.iterations.sum())
            self.converged += int(out.converged.sum())

    def summary(self) -> dict[str, float]:
        n, t = max(self.sequences, 1), max(self.tokens, 1)
        return {
            "perplexity": float(torch.tensor(self.nll / t).exp()),
            "accuracy": self.right / t,
            "mean_layer_evaluations": self.evaluations / n,
            "mean_iterations": self.iterations / n,
            "converged_share": self.converged / n,
        }


@torch.no_grad()
def lm_metrics(
    net: DynaLayNet, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], forced: bool = True
) -> dict[str, Any]:
    """x long (B, T), y long (B, T) → perplexities, action use, compute per token."""
    was_training = net.training
    net.eval()
    agent, straight = _Tally(), _Tally()
    per_action = [_Tally() for _ in range(len(THESIS_ACTIONS))]
    counts = torch.zeros(len(THESIS_ACTIONS), dtype=torch.long)
    for x, y in batches:
        s = net.straight(x)
        actions, agent_logits = net.decide(s)
        out = net.recompute(s, actions, agent_logits)
        agent.add(out.logits, y, out)
        straight.add(s.logits, y, None)
        counts += torch.bincount(actions.cpu(), minlength=len(THESIS_ACTIONS))
        if forced:
            for a in range(len(THESIS_ACTIONS)):
                forced_out = net.recompute(s, torch.full_like(actions, a), agent_logits)
                per_action[a].add(forced_out.logits, y, forced_out)
    net.train(was_training)
    return _report(agent, straight, per_action if forced else None, counts)


def _report(agent: _Tally, straight: _Tally, per_action, counts: torch.Tensor) -> dict[str, Any]:
    freq = {
        name: float(counts[a]) / max(int(counts.sum()), 1) for a, name in enumerate(THESIS_ACTIONS)
    }
    a, s = agent.summary(), straight.summary()
    used = sum(f >= 0.02 for f in freq.values())
    out: dict[str, Any] = {
        "n": agent.sequences,
        "tokens": agent.tokens,
        **a,
        "straight_accuracy": s["accuracy"],
        "straight_perplexity": s["perplexity"],
        "layer_evaluations_per_token": a["mean_layer_evaluations"],
        "action_frequencies": freq,
        "actions_used_2pct": used,
        "checks": {"not_collapsed": used >= 2},
    }
    if per_action is not None:
        out["forced"] = {
            name: t.summary() for name, t in zip(THESIS_ACTIONS, per_action, strict=True)
        }
    return out


def format_lm_summary(m: dict[str, Any]) -> str:
    lines = [
        f"{m['dataset']} {m['split']} ({m['n']} sequences, {m['tokens']} tokens): agent "
        f"perplexity {m['perplexity']:.2f} (straight pass {m['straight_perplexity']:.2f}) at "
        f"{m['layer_evaluations_per_token']:.2f} layer evaluations/token",
        f"{'':12s} {'agent freq':>10s} | {'forced ppl':>10s} {'evals':>6s} {'iters':>6s}",
    ]
    for name in THESIS_ACTIONS:
        f = m.get("forced", {}).get(name)
        forced = f"{f['perplexity']:10.2f} {f['mean_layer_evaluations']:6.2f} " if f else ""
        forced += f"{f['mean_iterations']:6.2f}" if f else ""
        lines.append(f"{name:12s} {m['action_frequencies'][name]:10.3f} | {forced}")
    return "\n".join(lines)
