"""Process setup for one process or many under torchrun (DDP-style data parallelism).

    torchrun --standalone --nproc_per_node=4 -m training fit --dataset cifar10 \
        --data-dir DIR --out checkpoints/cifar10 --preset gpu

With WORLD_SIZE > 1 every process joins the process group (NCCL on CUDA, Gloo on CPU), takes
every world-th sample of a shared per-epoch permutation, and averages gradients with all_reduce
after each backward. We average gradients ourselves instead of wrapping the net in
DistributedDataParallel because training drives the staged API (straight / decide / recompute),
which bypasses DDP.forward and therefore its reducer. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    return torch.device(name)


def init_runtime(device: str = "auto", threads: int | None = None) -> Runtime:
    """Reads torchrun's environment; initialises the process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if threads:
        torch.set_num_threads(threads)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = True
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Runtime(rank, world, dev)


def shutdown(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(params: Iterable[torch.nn.Parameter], runtime: Runtime) -> None:
    """Averages .grad over ranks with one flattened all_reduce.

    A parameter without a grad on this rank (e.g. a loop layer no sample used) contributes zeros,
    so every rank reduces the same buffer layout.
    """
    if not runtime.distributed:
        return
    params = [p for p in params if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= runtime.world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()
