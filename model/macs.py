"""Multiply-adds (MACs) per sample, counted by torch's flop counter on the network's own parts.

What a sample costs depends on its action and on the iterations its loop actually ran:

    straight        stem + layers once + head + profile + agent
    loop k, n its   straight + n · (one iteration of k) + finish of k + head
    tta             straight + the straight pass (stem, layers, head, profile) on 3 views

Each term is measured once per network with `torch.utils.flop_counter.FlopCounterMode` on one
sample run through the same functions that compute the answers (model/loops.py), so the count
follows the network's layout without a formula per architecture. For text every term is
a + b · tokens, measured at two lengths; a sample is charged for its own length.

The counter sees matrix products and convolutions (norms, activations and pooling are not
multiply-adds it counts); it has no rule for the fused LSTM, so `LSTM_MACS` adds one: every
weight matrix (4H × in) multiplies each token's input once per direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from model.actions import N_LAYERS, TTA, TTA_VIEWS


def _lstm_flops(
    input_shape,
    hx_shapes,
    params_shapes,
    has_biases,
    num_layers,
    dropout,
    train,
    bidirectional,
    batch_first,
    out_shape=None,
) -> int:
    """aten.lstm.input: 2 flops per multiply-add of each weight matrix with each token."""
    tokens = input_shape[0] * input_shape[1]  # B·T whichever of them comes first
    per_layer = 4 if has_biases else 2  # w_ih, w_hh (+ b_ih, b_hh) per layer and direction
    weights = [shape for i, shape in enumerate(params_shapes) if i % per_layer < 2]
    return 2 * tokens * sum(rows * cols for rows, cols in weights)


LSTM_MACS = {torch.ops.aten.lstm: _lstm_flops}


def count_macs(fn: Callable[[], object]) -> int:
    """Multiply-adds that fn() executes (flop counter total / 2)."""
    with FlopCounterMode(display=False, custom_mapping=LSTM_MACS) as counter:
        fn()
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class Linear:
    """a + b · tokens multiply-adds (b = 0 for images)."""

    fixed: float
    per_token: float = 0.0

    def at(self, tokens: Tensor | None) -> Tensor | float:
        return self.fixed if tokens is None else self.fixed + self.per_token * tokens


@dataclass(frozen=True)
class ActionMacs:
    """One sample's multiply-adds through each piece an action may run."""

    straight: Linear  # stem, layers once, head, profile, agent
    iterate: tuple[Linear, ...]  # one iteration of loop k = 1..3
    finish: tuple[Linear, ...]  # finish of loop k (layers k+1..3) plus the head
    tta_views: Linear  # the straight pass (no agent) on the three extra views

    def per_sample(
        self, actions: Tensor, iterations: Tensor, tokens: Tensor | None = None
    ) -> Tensor:
        """actions, iterations (B,) long [, tokens (B,)] → (B,) long multiply-adds."""
        n = iterations.to(torch.float64)
        t = None if tokens is None else tokens.to(device=actions.device, dtype=torch.float64)
        macs = torch.full_like(n, 0.0) + self.straight.at(t)
        for k in range(1, N_LAYERS + 1):
            looped = macs + n * self.iterate[k - 1].at(t) + self.finish[k - 1].at(t)
            macs = torch.where(actions == k, looped, macs)
        macs = torch.where(actions == TTA, macs + self.tta_views.at(t), macs)
        return macs.round().long()


def tokens_of(inj: tuple[Tensor, ...]) -> Tensor | None:
    """(B,) real tokens of each text sample from the stem's output (its mask's sum, so padding
    is never charged); None for images, whose stem gives the injection alone."""
    return inj[1].sum(dim=(1, 2)) if len(inj) > 1 else None


def measure(parts, loops, example: Callable[[int], tuple[Tensor, Tensor | None]], text: bool):
    """ActionMacs of a network's parts; example(tokens) gives one sample (x, lengths)."""
    lengths = (4, 8) if text else (None,)
    counts = [_counts(parts, loops, *example(n or 0)) for n in lengths]
    if not text:
        return _action_macs({k: Linear(v) for k, v in counts[0].items()})
    short, long = counts
    span = lengths[1] - lengths[0]
    fitted = {}
    for key in short:
        slope = (long[key] - short[key]) / span
        fitted[key] = Linear(short[key] - slope * lengths[0], slope)
    return _action_macs(fitted)


def _action_macs(terms: dict[str, Linear]) -> ActionMacs:
    return ActionMacs(
        straight=terms["straight"],
        iterate=tuple(terms[f"iterate{k}"] for k in range(1, N_LAYERS + 1)),
        finish=tuple(terms[f"finish{k}"] for k in range(1, N_LAYERS + 1)),
        tta_views=Linear(
            (TTA_VIEWS - 1) * terms["view"].fixed, (TTA_VIEWS - 1) * terms["view"].per_token
        ),
    )


def _counts(parts, loops, x: Tensor, lengths: Tensor | None) -> dict[str, int]:
    """Multiply-adds of each piece for one sample x (1, ...)."""
    inj = parts.stem(x, lengths)
    states = loops.straight(parts, inj)
    logits = parts.head(states[-1], inj)
    profile = parts.profile(states, logits, inj)
    stem = count_macs(lambda: parts.stem(x, lengths))
    layers = count_macs(lambda: loops.straight(parts, inj))
    head = count_macs(lambda: parts.head(states[-1], inj))
    profiled = count_macs(lambda: parts.profile(states, logits, inj))
    out = {
        "straight": stem + layers + head + profiled + count_macs(lambda: parts.agent(profile)),
        "view": stem + layers + head,  # `pass_logits`: no profile, no agent
    }
    for k in range(1, N_LAYERS + 1):
        z = loops.start(k, states)
        out[f"iterate{k}"] = count_macs(lambda: loops.iterate(parts, k, z, inj))  # noqa: B023
        out[f"finish{k}"] = head + count_macs(lambda: loops.finish(parts, k, z, inj))  # noqa: B023
    return out
