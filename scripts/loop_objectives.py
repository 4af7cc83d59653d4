"""Which training objective makes more sweeps of the staged CNN more accurate?

`python scripts/loop_objectives.py --data-dir data --out reports/cifar10/loop-objectives`

Each design trains a fresh staged network (`model.staged`, `ModelConfig(stem="staged")`, its
agent unused) on CIFAR-10's training images less
the 5,000 held-out validation images (`training.data.holdout`), with an exit (the shared head)
after every sweep of all three stages, for the same epochs, and is scored on the validation
split at 1..8 sweeps of every stage prefix (loop_l1: stage 1 swept n times then stages 2-3 once
more, loop_l1_l2, loop_all). The test set is not read. The designs are the anytime objectives of
training/trainer/anytime.py; they differ only in the loss over the exits:

- equal: mean cross-entropy over exits 1..4;
- growing: exit t weighted t / Σt (T = 4);
- growing-distill: growing weights; exits before the last also match the last exit's
  (detached) probabilities, half their loss each;
- curriculum: growing weights over T exits, T rising from 2 to 6 over the run;
- depth: the last exit only at T = 5, plus heads on detached earlier states (0.2 each), so
  the early exits cannot pull the shared weights towards one sweep;
- depth-curriculum: the same with T rising from 2 to 5 over the run;
- progressive: 0..3 sweeps (drawn per batch) without a gradient, then the rest of 4 with one,
  the last exit only (truncated backprop through a random start);
- random-depth: growing weights over T exits with T drawn per batch from 1..6;
- fixed-point-jr: deep-equilibrium training: 6 sweeps, a gradient through the last only, the
  answer at the state reached only, plus 0.6 × a Jacobian penalty there (Hutchinson's
  estimate of ‖∂f/∂z‖²_F per element), which keeps the sweep contractive.

One JSON per design under OUT (resumable: a design with results is skipped; --rescore measures
its curves again from the weights kept under --weights), then OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model.config import ModelConfig
from model.network import DynaLayNet, ModuleParts, anytime_logits, build_model
from training.data import load_split
from training.data.augment import normalize, random_crop, random_flip
from training.data.holdout import split_holdout
from training.data.stats import channel_stats
from training.trainer.anytime import OBJECTIVES, anytime_loss

LABEL_SMOOTHING = 0.1
BUDGETS = tuple(range(1, 9))


def train(net, images, labels, mean, std, design: str, epochs: int, batch: int, lr: float):
    decay, no_decay = [], []
    for p in net.backbone.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        momentum=0.9,
        nesterov=True,
    )
    gen = torch.Generator().manual_seed(0)
    n = len(labels)
    per_epoch = n // batch
    total = epochs * per_epoch
    step, sweeps_run, t0 = 0, 0, time.perf_counter()
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            x = normalize(images[idx], mean, std)
            x = random_flip(random_crop(x, 2, gen), gen).contiguous(
                memory_format=torch.channels_last
            )
            progress = step / total
            warm = 0.2
            scale = progress / warm if progress < warm else (1 - progress) / (1 - warm)
            for g in opt.param_groups:
                g["lr"] = lr * scale
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss, _, draw = anytime_loss(
                    design, net, x, labels[idx], progress, gen, LABEL_SMOOTHING
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            sweeps_run += draw.iterations
        print(
            f"  epoch {epoch + 1}/{epochs} loss {loss.item():.3f} {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    return time.perf_counter() - t0, sweeps_run / max(step, 1)


@torch.no_grad()
def curves(net: DynaLayNet, images, labels, mean, std) -> dict[str, list[float]]:
    """Validation accuracy of loop_l1 / loop_l1_l2 / loop_all at every budget in BUDGETS (n
    sweeps of stages 1..k, the first being the straight pass, then stages k+1..3 once)."""
    net.eval()
    parts = ModuleParts(net)
    right = {name: [0] * len(BUDGETS) for name in ("loop_l1", "loop_l1_l2", "loop_all")}
    for chunk, y in zip(images.split(500), labels.split(500), strict=True):
        x = normalize(chunk, mean, std).contiguous(memory_format=torch.channels_last)
        for k, name in enumerate(right, start=1):
            exits = anytime_logits(parts, x, len(BUDGETS), action=k)
            for b, logits in enumerate(exits):
                right[name][b] += int((logits.argmax(1) == y).sum())
    return {name: [r / len(labels) for r in counts] for name, counts in right.items()}


def rescore(path: Path, weights: Path, widths, val, mean, std) -> None:
    """The curves of a trained design, measured again from its saved weights."""
    net = build_model(ModelConfig(stem="staged", stage_widths=widths))
    net.backbone.load_state_dict(load_file(str(weights)))
    net = net.to(memory_format=torch.channels_last)
    result = json.loads(path.read_text())
    result["validation"] = curves(net, val.images, val.labels, mean, std)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(path.stem, {k: [round(100 * a, 2) for a in v] for k, v in result["validation"].items()})


def table(out: Path) -> str:
    lines = [
        "| design | epochs | sweeps per step | " + " | ".join(f"n={b}" for b in BUDGETS) + " |",
        "|---|---|---|" + "---|" * len(BUDGETS),
    ]
    for path in sorted(out.glob("*.json")):
        r = json.loads(path.read_text())
        for name, accs in r["validation"].items():
            cells = " | ".join(f"{100 * a:.2f}" for a in accs)
            lines.append(
                f"| {r['design']} {name} | {r['epochs']} | {r['mean_sweeps']:.1f} | {cells} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--designs", default=",".join(OBJECTIVES))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--widths", default="64,128,256")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tag", default="", help="appended to each design's file name")
    p.add_argument(
        "--weights", type=Path, default=Path("runs/loop-objectives"), help="trained weights go here"
    )
    p.add_argument("--limit", type=int, default=0, help="train on the first N images (smoke runs)")
    p.add_argument(
        "--rescore", action="store_true", help="re-measure the curves of designs already trained"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    args.weights.mkdir(parents=True, exist_ok=True)
    train_split, val = split_holdout(load_split("cifar10", "train", args.data_dir))
    if args.limit:
        train_split, val = train_split.subset(args.limit), val.subset(args.limit)
    mean, std = (torch.tensor(v) for v in channel_stats(train_split))
    widths = tuple(int(w) for w in args.widths.split(","))
    for name in args.designs.split(","):
        path = args.out / f"{name}{args.tag}.json"
        if path.exists() and args.rescore:
            rescore(path, args.weights / f"{name}{args.tag}.safetensors", widths, val, mean, std)
            continue
        if path.exists():
            print(f"{name}: done before ({path})")
            continue
        print(f"{name}: training {args.epochs} epochs", flush=True)
        torch.manual_seed(0)
        net = build_model(ModelConfig(stem="staged", stage_widths=widths))
        net.backbone.init_whitening(normalize(train_split.images[:5000], mean, std))
        net = net.to(memory_format=torch.channels_last)
        seconds, mean_sweeps = train(
            net,
            train_split.images,
            train_split.labels,
            mean,
            std,
            name,
            args.epochs,
            args.batch,
            args.lr,
        )
        val_curves = curves(net, val.images, val.labels, mean, std)
        result = {
            "design": name,
            "widths": widths,
            "epochs": args.epochs,
            "train_seconds": round(seconds),
            "mean_sweeps": mean_sweeps,
            "split": "validation (5,000 held-out training images)",
            "validation": val_curves,
        }
        save_file(
            {k: v.contiguous() for k, v in net.backbone.state_dict().items()},
            str(args.weights / f"{name}{args.tag}.safetensors"),
        )
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(name, {k: [round(100 * a, 2) for a in v] for k, v in val_curves.items()}, flush=True)
    (args.out / "table.md").write_text(table(args.out))
    print(table(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
