"""What would the `tta` action buy on a checkpoint? Forced on every image, and gated by confidence.

`python scripts/tta_headroom.py CHECKPOINT --data-dir data [--dataset cifar100] --out FILE.json`

Runs the checkpoint's straight pass on each test image and the action's own
`model.network.tta_logits` (three more views: the mirror, and both moved one pixel; four views'
logits averaged), and prints/writes: straight accuracy, `tta` forced on every image, and a
confidence gate (`tta` where the straight top probability < t) with its share of images and
mean layer evaluations (3 per pass, 12 for a `tta` image). Works on checkpoints trained
without the action too: the views only need the straight pass.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from model.actions import N_LAYERS, TTA_VIEWS
from model.checkpoint import load_checkpoint
from model.network import ModuleParts, tta_logits
from training.data import load_split
from training.data.augment import normalize

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8)


@torch.no_grad()
def view_logits(checkpoint: Path, dataset: str, data_dir: Path, batch: int = 500):
    """(straight logits (N, C), tta logits (N, C), labels (N,)) over the test split."""
    loaded = load_checkpoint(checkpoint)
    net, prep = loaded.net, loaded.preprocessing
    parts = ModuleParts(net)
    mean, std = torch.tensor(prep["mean"]), torch.tensor(prep["std"])
    split = load_split(dataset, "test", data_dir)
    straight, views = [], []
    for i in range(0, len(split.labels), batch):
        x = normalize(split.images[i : i + batch], mean, std)
        x = x.contiguous(memory_format=torch.channels_last)
        s = net.straight(x).logits
        straight.append(s.float())
        views.append(tta_logits(parts, x, s).float())
    return torch.cat(straight), torch.cat(views), split.labels


def summary(straight: torch.Tensor, views: torch.Tensor, labels: torch.Tensor) -> dict:
    def accuracy(logits):
        return (logits.argmax(1) == labels).float().mean().item()

    confidence = straight.softmax(1).amax(1)
    gate = []
    for t in THRESHOLDS:
        chosen = confidence < t
        share = chosen.float().mean().item()
        gate.append(
            {
                "threshold": t,
                "tta_share": share,
                "accuracy": accuracy(torch.where(chosen[:, None], views, straight)),
                "mean_layer_evaluations": N_LAYERS * (1 + (TTA_VIEWS - 1) * share),
            }
        )
    return {
        "n": len(labels),
        "straight": accuracy(straight),
        "tta_forced": accuracy(views),
        "gate": gate,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    result = summary(*view_logits(args.checkpoint, args.dataset, args.data_dir))
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
