"""How much does more depth after a trained stem buy? Untied 2× / 3× depth against tied reuse.

`python scripts/depth_headroom.py CHECKPOINT --data-dir data --out reports/cifar10-depth`

The checkpoint's stem is frozen and its outputs cached once (training images and their
mirrors, test images): u (N, W, S, S). On top of it, each arm trains a stack of the backbone's
loopable layers plus a fresh copy of the head for the same epochs and steps:
- `untied ×k`: 3·k distinct layers, layer i initialised from the checkpoint's layer i mod 3;
- `tied ×k`: the checkpoint's 3 layers, each applied k times in a row (what a loop of k
  iterations computes), trained as such;
- `retrained ×1`: the 3 layers once, trained the same way (the control).
Every layer sees the injection u, as in the network. The table says whether depth that one
pass of the same weights cannot reach exists at this width (untied above tied above ×1), which
is the headroom the loops can at best recover without extra parameters.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model.checkpoint import load_checkpoint
from training.data import load_split
from training.data.augment import normalize


class Stack(nn.Module):
    """layers applied in order, each `repeat` times: (B, W, S, S) → logits via the head."""

    def __init__(self, backbone: nn.Module, layers: list[nn.Module], repeat: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.repeat = repeat
        self.backbone = backbone  # its head (fc, pooling), a fresh copy per arm

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        h = u
        for layer in self.layers:
            for _ in range(self.repeat):
                h = layer(h, u)
        return self.backbone.head(h, u)


@torch.no_grad()
def stem_features(net, images: torch.Tensor, mean, std, flip: bool) -> torch.Tensor:
    out = []
    for chunk in images.split(500):
        x = normalize(chunk, mean, std)
        if flip:
            x = x.flip(3)
        out.append(net.backbone.stem(x.contiguous(memory_format=torch.channels_last))[0])
    return torch.cat(out)


def arm(net, depth_factor: int, repeat: int) -> Stack:
    base = list(net.backbone.layers)
    layers = [copy.deepcopy(base[i % 3]) for i in range(3 * depth_factor)]
    stack = Stack(copy.deepcopy(net.backbone), layers, repeat)
    for p in stack.backbone.parameters():
        p.requires_grad_(False)
    for p in stack.backbone.fc.parameters():
        p.requires_grad_(True)
    return stack


def train_arm(stack: Stack, u_train, u_flip, y_train, epochs: int, lr: float, seed: int) -> float:
    params = [p for p in stack.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    n, batch = len(y_train), 512
    steps = epochs * (n // batch)
    step, t0 = 0, time.perf_counter()
    stack.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(n // batch):
            idx = order[i * batch : (i + 1) * batch]
            use_flip = torch.rand(len(idx), generator=gen) < 0.5
            u = torch.where(use_flip[:, None, None, None], u_flip[idx], u_train[idx])
            for g in opt.param_groups:
                g["lr"] = lr * (1 - step / steps)
            loss = F.cross_entropy(stack(u), y_train[idx], label_smoothing=0.2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return time.perf_counter() - t0


@torch.no_grad()
def accuracy(stack: nn.Module, u_test, y_test) -> float:
    stack.eval()
    right = sum(
        int((stack(u).argmax(1) == y).sum())
        for u, y in zip(u_test.split(1000), y_test.split(1000), strict=True)
    )
    return right / len(y_test)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ck = load_checkpoint(args.checkpoint)
    net = ck.net.eval().to(memory_format=torch.channels_last)
    mean = torch.tensor(ck.preprocessing["mean"])
    std = torch.tensor(ck.preprocessing["std"])
    train = load_split("cifar10", "train", args.data_dir)
    test = load_split("cifar10", "test", args.data_dir)
    t0 = time.perf_counter()
    u_train = stem_features(net, train.images, mean, std, flip=False)
    u_flip = stem_features(net, train.images, mean, std, flip=True)
    u_test = stem_features(net, test.images, mean, std, flip=False)
    print(f"stem features {tuple(u_train.shape)} in {time.perf_counter() - t0:.0f} s", flush=True)
    as_shipped = Stack(net.backbone, list(net.backbone.layers), 1)
    results = {"checkpoint": str(args.checkpoint), "epochs": args.epochs, "arms": []}
    results["arms"].append(
        {
            "arm": "as trained (×1)",
            "layer_evaluations": 3,
            "accuracy": accuracy(as_shipped, u_test, test.labels),
        }
    )
    for name, factor, repeat in [
        ("retrained ×1", 1, 1),
        ("tied ×2", 1, 2),
        ("untied ×2", 2, 1),
        ("tied ×3", 1, 3),
        ("untied ×3", 3, 1),
    ]:
        stack = arm(net, factor, repeat)
        seconds = train_arm(stack, u_train, u_flip, train.labels, args.epochs, args.lr, seed=0)
        row = {
            "arm": name,
            "layer_evaluations": 3 * factor * repeat,
            "parameters": sum(p.numel() for p in stack.layers.parameters()),
            "accuracy": accuracy(stack, u_test, test.labels),
            "train_seconds": round(seconds, 1),
        }
        results["arms"].append(row)
        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        "| arm | layer evaluations | loop-layer parameters | test accuracy |",
        "|---|---|---|---|",
    ]
    for r in results["arms"]:
        lines.append(
            f"| {r['arm']} | {r['layer_evaluations']} | {r.get('parameters', '')} | "
            f"{100 * r['accuracy']:.2f}% |"
        )
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
