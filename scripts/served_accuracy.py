"""Accuracy of a running server on real CIFAR test images sent as PNG files over HTTP.

    python scripts/served_accuracy.py --data-dir data --n 600 --url http://127.0.0.1:8000 \
        --out reports/served_cifar10.json

Reads the official binary test batch, encodes each image as a PNG (what a user uploads),
POSTs it to /predict (multipart `file`) from `--concurrency` clients, and reports accuracy,
the agent's action shares and the mean layer evaluations the server says it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

RECORD = 1 + 3 * 32 * 32  # label byte + CHW pixels


def test_images(data_dir: Path, n: int) -> list[tuple[bytes, int]]:
    raw = np.fromfile(data_dir / "cifar-10-batches-bin" / "test_batch.bin", dtype=np.uint8)
    rows = raw.reshape(-1, RECORD)[:n]
    out = []
    for row in rows:
        image = row[1:].reshape(3, 32, 32).transpose(1, 2, 0)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        out.append((buf.getvalue(), int(row[0])))
    return out


async def classify(
    url: str, items, concurrency: int, action: str | None, model: str | None = None
) -> list[dict]:
    results: list[dict] = [{}] * len(items)
    queue = asyncio.Queue()
    for i in range(len(items)):
        queue.put_nowait(i)
    data = {"action": action} if action else {}
    if model:
        data["model"] = model

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            png, _ = items[i]
            files = {"file": ("x.png", png, "image/png")}
            r = await client.post("/predict", files=files, data=data)
            r.raise_for_status()
            results[i] = r.json()

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return results


def summarise(items, answers) -> dict:
    right = [a["class_index"] == label for (_, label), a in zip(items, answers, strict=True)]
    actions = Counter(a["action"] for a in answers)
    return {
        "n": len(items),
        "accuracy": sum(right) / len(items),
        "action_shares": {k: v / len(items) for k, v in sorted(actions.items())},
        "mean_layer_evaluations": sum(a["layer_evaluations"] for a in answers) / len(items),
        "mean_macs": sum(a["macs"] for a in answers) / len(items),
        "model_version": answers[0]["model_version"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--action", help="force this action (default: the agent decides)")
    p.add_argument("--out", type=Path)
    p.add_argument("--model", help="the model to ask (needed when several image models are served)")
    args = p.parse_args()
    items = test_images(args.data_dir, args.n)
    answers = asyncio.run(classify(args.url, items, args.concurrency, args.action, args.model))
    summary = {**summarise(items, answers), "action_forced": args.action}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
