"""The "DEQ with solvers" baseline: loop_all solved by the torchdeq library.

torchdeq (Geng & Kolter) runs the forward solve with Anderson or Broyden and differentiates the
fixed point implicitly (IFT, its backward solve with the same solver). It is plugged into the
model core as one more backward mode (model.backward's registry), so the network, its per-group
routing and its layer-evaluation accounting stay ours. torchdeq stops when the whole batch has
converged, so every sample is charged the batch's solver evaluations: the compute that ran.
Without torchdeq installed the baseline falls back to our own Anderson solver with our
implicit backward, and says so in its label.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import torch
from torch import Tensor

from model.backward import LoopConfig, register_backward
from model.solvers import LoopFn, SolverStats

MODE = "torchdeq"
SOLVER_NAMES = {"anderson": "anderson", "broyden": "broyden", "fixed_point": "fixed_point_iter"}


def torchdeq_version() -> str | None:
    try:
        import torchdeq  # noqa: F401
    except ImportError:
        return None
    return metadata.version("torchdeq")


def torchdeq_loop(
    f: LoopFn, z0: Tensor, inj: tuple[Tensor, ...], cfg: LoopConfig
) -> tuple[Tensor, SolverStats]:
    from torchdeq import get_deq

    solver = SOLVER_NAMES[cfg.solver]
    deq = get_deq(
        core="indexing",
        ift=True,
        f_solver=solver,
        b_solver=solver,
        f_max_iter=cfg.max_iter,
        f_tol=cfg.tol,
        f_stop_mode="rel",  # the same ‖f(z)−z‖/‖f(z)‖ criterion as model.solvers
        b_max_iter=cfg.b_max_iter,
        b_tol=cfg.b_tol,
        b_stop_mode="rel",
    )
    deq.train(torch.is_grad_enabled())  # training: IFT graph; inference: the solve only
    solver_calls = 0

    def g(z: Tensor) -> Tensor:
        nonlocal solver_calls
        # torchdeq solves under no_grad; its one differentiable IFT step is not a solver call.
        solver_calls += not torch.is_grad_enabled()
        return f(z, *inj)

    z_out, info = deq(g, z0.detach())
    residual = info["rel_lowest"].to(z0.device).float()
    iterations = torch.full((z0.shape[0],), solver_calls, dtype=torch.long, device=z0.device)
    return z_out[-1], SolverStats(iterations, residual, residual < cfg.tol)


def register() -> None:
    register_backward(MODE, torchdeq_loop)


def model_overrides(solver: str) -> tuple[dict[str, Any], str]:
    """ModelConfig overrides for the baseline and a label naming what actually runs."""
    version = torchdeq_version()
    if version is not None:
        if solver not in SOLVER_NAMES:
            raise ValueError(f"torchdeq solver must be one of {sorted(SOLVER_NAMES)}")
        register()
        label = f"torchdeq {version}: {solver} forward, implicit (IFT) backward"
        return {"solver": solver, "backward": MODE}, label
    label = (
        "torchdeq not installed: our model.solvers.anderson forward + model.backward.implicit "
        f"backward (asked for {solver})"
    )
    return {"solver": "anderson", "backward": "implicit"}, label
