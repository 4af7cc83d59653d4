"""The per-sample reward of the thesis (eq. 3.13): R = α·correct − β·cost·k.

k    = the layers an action runs again (model.actions.cost_layers): the number of consecutive
       looped layers for a loop (0 straight, 1 loop_l1, 2 loop_l1_l2, 3 loop_all), and all
       three for `tta`, which reruns the whole pass on each of its views.
cost = layer evaluations actually executed for the sample (ForwardOutput.layer_evaluations,
       straight pass = 3 included) divided by a normaliser, by default the most a sample can
       cost: loop_all at max_iter, 3 + 3·max_iter — so cost ∈ (0, 1] and β sets the trade-off.
"""

from __future__ import annotations

import torch

from model.actions import N_LAYERS, TTA

STRAIGHT_EVALUATIONS = 3  # L1, L2, L3 once


def max_layer_evaluations(max_iter: int) -> int:
    """Worst case per sample: the straight pass plus loop_all (3 layers) for max_iter steps."""
    return STRAIGHT_EVALUATIONS + 3 * max_iter


def reward(
    correct: torch.Tensor,
    actions: torch.Tensor,
    layer_evaluations: torch.Tensor,
    alpha: float,
    beta: float,
    normalizer: float,
) -> torch.Tensor:
    """correct bool (B,), actions long (B,) in 0..4, layer_evaluations long (B,) → R float (B,)."""
    cost = layer_evaluations.to(torch.float32) / normalizer
    k = torch.where(actions == TTA, N_LAYERS, actions).to(torch.float32)
    return alpha * correct.to(torch.float32) - beta * cost * k
