"""The peer: a LitServe app serving a DynaLay checkpoint, written as a LitServe user would.

    python -m benchmarks.peers.litserve_app CHECKPOINT --port 8001 [--max-batch 32]
        [--batch-timeout 0.002] [--threads 2]

POST /predict with a multipart `file` (a PNG or JPEG) answers {"label", "class_index",
"probability", "action"}: the checkpoint's adaptive forward in fp32, the agent deciding.
"""

from __future__ import annotations

import argparse
import io

import litserve as ls
import numpy as np
import torch
from PIL import Image

from model.actions import ACTIONS
from model.checkpoint import load_checkpoint


class DynaLayAPI(ls.LitAPI):
    def __init__(self, checkpoint: str, threads: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.checkpoint = checkpoint
        self.threads = threads

    def setup(self, device: str) -> None:
        torch.set_num_threads(self.threads)
        loaded = load_checkpoint(self.checkpoint)
        self.net = loaded.net.eval()
        self.classes = loaded.classes
        prep = loaded.preprocessing
        self.size = tuple(prep.get("image_size", (32, 32)))
        self.mean = np.asarray(prep["mean"], dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(prep["std"], dtype=np.float32).reshape(3, 1, 1)

    def decode_request(self, request) -> torch.Tensor:
        data = request["file"].file.read()
        image = Image.open(io.BytesIO(data)).convert("RGB")
        if image.size != self.size[::-1]:
            image = image.resize(self.size[::-1], Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0  # (3, H, W)
        return torch.from_numpy((pixels - self.mean) / self.std)

    def batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor):
        out = self.net(x)
        probabilities = torch.softmax(out.logits, dim=-1)
        top, index = probabilities.max(dim=-1)
        return list(zip(index.tolist(), top.tolist(), out.actions.tolist(), strict=True))

    def unbatch(self, output):
        return output

    def encode_response(self, output) -> dict:
        index, probability, action = output
        return {
            "label": self.classes[index],
            "class_index": index,
            "probability": probability,
            "action": ACTIONS[action],
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--batch-timeout", type=float, default=0.002)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    api = DynaLayAPI(
        args.checkpoint, args.threads, max_batch_size=args.max_batch,
        batch_timeout=args.batch_timeout,
    )  # fmt: skip
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=60)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False)


if __name__ == "__main__":
    main()
