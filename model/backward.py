"""How gradients pass through a fixed-point loop, behind one registry.

Every mode has the signature `mode(f, z0, inj, cfg) -> (z, SolverStats)`: it runs the forward
solver (`cfg.solver`) and returns a z* that carries the chosen gradient:

- "implicit": exact implicit differentiation (thesis §3.3.4). The solve runs without a graph;
  one differentiable step z = f(z*, inj) connects z* to the parameters and the injection, and
  a hook replaces the incoming gradient v = ∂L/∂z* by the adjoint fixed point g = Jᵀg + v
  (J = ∂f/∂z at z*), itself solved by iteration with vector-Jacobian products (cfg.b_tol,
  cfg.b_max_iter). Memory is one step's graph, whatever the forward iterations.
- "phantom": the cheap variant: `cfg.phantom_steps` differentiable steps from the detached
  fixed point (1 step = Jacobian-free backprop).
- "unrolled": plain autograd through every forward iteration (reference; memory grows).

Without grad (inference) every mode returns the solver's z* unchanged.
"""

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from model.solvers import LoopFn, SolverStats, get_solver, relative_residual


class LoopConfig(Protocol):
    solver: str
    tol: float
    max_iter: int
    b_tol: float
    b_max_iter: int
    phantom_steps: int


BackwardMode = Callable[
    [LoopFn, Tensor, tuple[Tensor, ...], LoopConfig], tuple[Tensor, SolverStats]
]


def _solve_detached(f: LoopFn, z0: Tensor, inj: tuple[Tensor, ...], cfg: LoopConfig):
    with torch.no_grad():
        return get_solver(cfg.solver)(f, z0.detach(), inj, cfg.tol, cfg.max_iter)


def implicit(f: LoopFn, z0: Tensor, inj: tuple[Tensor, ...], cfg: LoopConfig):
    z_star, stats = _solve_detached(f, z0, inj, cfg)
    if not torch.is_grad_enabled():  # inference: no graph to build
        return z_star, stats
    z_out = f(z_star, *inj)  # differentiable step: grads reach parameters and inj
    if not z_out.requires_grad:
        return z_out, stats
    z_fixed = z_star.detach().requires_grad_()
    f_fixed = f(z_fixed, *inj)  # graph used only for the vector-Jacobian products Jᵀg

    def adjoint(v: Tensor | None) -> Tensor | None:
        if v is None:  # undefined incoming gradient: nothing to transform
            return v
        g = v
        for _ in range(cfg.b_max_iter):
            (jtg,) = torch.autograd.grad(f_fixed, z_fixed, g, retain_graph=True)
            g_next = jtg + v
            done = relative_residual(g_next, g).max() < cfg.b_tol
            g = g_next
            if done:
                break
        return g

    z_out.register_hook(adjoint)
    return z_out, stats


def phantom(f: LoopFn, z0: Tensor, inj: tuple[Tensor, ...], cfg: LoopConfig):
    z, stats = _solve_detached(f, z0, inj, cfg)
    if not torch.is_grad_enabled():  # inference: no graph to build
        return z, stats
    for _ in range(cfg.phantom_steps):
        z = f(z, *inj)
    return z, stats


def unrolled(f: LoopFn, z0: Tensor, inj: tuple[Tensor, ...], cfg: LoopConfig):
    return get_solver(cfg.solver)(f, z0, inj, cfg.tol, cfg.max_iter)


BACKWARDS: dict[str, BackwardMode] = {
    "implicit": implicit,
    "phantom": phantom,
    "unrolled": unrolled,
}


def register_backward(name: str, mode: BackwardMode) -> None:
    """Adds a backward mode (e.g. a baseline from another library) that ModelConfig.backward
    can then name; registering the same mode twice is a no-op, another under a taken name
    is refused."""
    if BACKWARDS.setdefault(name, mode) is not mode:
        raise ValueError(f"backward mode {name!r} is already registered")


def get_backward(name: str) -> BackwardMode:
    if name not in BACKWARDS:
        raise KeyError(f"unknown backward mode {name!r}; choose one of {sorted(BACKWARDS)}")
    return BACKWARDS[name]


def solve_loop(f: LoopFn, z0: Tensor, inj: tuple[Tensor, ...], cfg: LoopConfig, backward: str):
    """Solve z = f(z, *inj) from z0 with the named backward mode.

    With z* = ½·cos z* + x, implicit differentiation gives dz*/dx = 1 / (1 + ½·sin z*):

    >>> from types import SimpleNamespace
    >>> cfg = SimpleNamespace(solver="fixed_point", tol=1e-12, max_iter=200, b_tol=1e-12,
    ...                       b_max_iter=200, phantom_steps=1)
    >>> x = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
    >>> f = lambda z, x: 0.5 * torch.cos(z) + x
    >>> z, stats = solve_loop(f, torch.zeros_like(x), (x,), cfg, "implicit")
    >>> z.sum().backward()
    >>> torch.allclose(x.grad, 1 / (1 + 0.5 * torch.sin(z.detach())))
    True
    """
    return get_backward(backward)(f, z0, inj, cfg)
