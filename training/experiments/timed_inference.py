"""Timed inference over the test split: loss, accuracy, layer evaluations, ms per image.

A policy maps a batch to (logits, layer evaluations per sample); each is the path that model
runs in deployment: the plain model its straight pass, a forced model its action, DynaLay the
straight pass → agent → recompute, the gate the straight pass → threshold → recompute. Only
model compute is timed (batches are already on the device); the first batch runs once untimed
to warm up (cuDNN autotuning, allocator), and CUDA is synchronised around every batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from model.actions import N_LAYERS, N_LOOP_ACTIONS
from model.network import DynaLayNet

Policy = Callable[[DynaLayNet, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class InferenceResult:
    n: int
    loss: float  # mean cross-entropy (no label smoothing)
    accuracy: float
    mean_layer_evaluations: float
    seconds: float
    ms_per_image: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def straight_policy(net: DynaLayNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = net.straight(x).logits
    return logits, torch.full((x.shape[0],), N_LAYERS, device=x.device)


def forced_policy(action: int) -> Policy:
    if action == 0:
        return straight_policy

    def policy(net: DynaLayNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        straight = net.straight(x)
        actions = torch.full((x.shape[0],), action, dtype=torch.long, device=x.device)
        no_agent = torch.zeros(x.shape[0], N_LOOP_ACTIONS, device=x.device)
        out = net.recompute(straight, actions, no_agent)
        return out.logits, out.layer_evaluations

    return policy


def agent_policy(net: DynaLayNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = net(x)
    return out.logits, out.layer_evaluations


def gate_policy(threshold: float, action: int = N_LOOP_ACTIONS - 1) -> Policy:
    """Loop (with `action`) the inputs whose straight top probability is below threshold."""

    def policy(net: DynaLayNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        straight = net.straight(x)
        top = straight.logits.float().softmax(1).amax(1)
        actions = torch.where(top < threshold, action, 0)
        no_agent = torch.zeros(x.shape[0], N_LOOP_ACTIONS, device=x.device)
        out = net.recompute(straight, actions, no_agent)
        return out.logits, out.layer_evaluations

    return policy


@torch.no_grad()
def timed_inference(
    net: DynaLayNet,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    policy: Policy,
) -> InferenceResult:
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    loss = correct = evals = 0.0
    n, seconds, warm = 0, 0.0, False
    for x, y in batches:
        if not warm:
            policy(net, x)
            warm = True
        _sync(device)
        start = time.perf_counter()
        logits, layer_evaluations = policy(net, x)
        _sync(device)
        seconds += time.perf_counter() - start
        loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        evals += layer_evaluations.float().sum().item()
        n += int(y.shape[0])
    net.train(was_training)
    m = max(n, 1)
    return InferenceResult(n, loss / m, correct / m, evals / m, seconds, 1000.0 * seconds / m)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
