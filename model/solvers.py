"""Forward fixed-point solvers with per-sample convergence, behind one registry.

Every solver has the signature `solve(f, z0, inj, tol, max_iter) -> (z, SolverStats)` and finds
z = f(z, *inj) for each sample of a batch. `inj` is a tuple of batch-first tensors (the input
injection, masks, ...) that `f` receives sliced like `z`.

Per-sample convergence: a sample stops when its relative residual ‖f(z)−z‖ / ‖f(z)‖ drops
below `tol`; from then on its state is frozen and `f` is evaluated only on the samples still
iterating, so converged samples cost nothing. A sample that never converges returns its best
iterate (lowest residual), which also keeps a diverging or NaN loop from poisoning the answer.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

LoopFn = Callable[..., Tensor]
_EPS = 1e-12


@dataclass(frozen=True)
class SolverStats:
    iterations: Tensor  # (B,) long: f evaluations per sample
    residual: Tensor  # (B,) float: final relative residual per sample
    converged: Tensor  # (B,) bool


def relative_residual(fz: Tensor, z: Tensor) -> Tensor:
    """‖f(z)−z‖ / ‖f(z)‖ per sample. (B, ...) × (B, ...) → (B,).

    >>> relative_residual(torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 0.0]]))  # 4 / 5
    tensor([0.8000])
    """
    # In bf16 (8 bits of mantissa) the difference of two close iterates is mostly rounding:
    # the residual, and with it the stop test, is computed in at least fp32.
    fz, z = _at_least_fp32(fz), _at_least_fp32(z)
    diff = (fz - z).flatten(1).norm(dim=1)
    return diff / (fz.flatten(1).norm(dim=1) + _EPS)


def _at_least_fp32(t: Tensor) -> Tensor:
    return t.float() if t.is_floating_point() and t.element_size() < 4 else t


@dataclass(frozen=True)
class Verdict:
    """One iteration's outcome per sample, the convergence rule every loop runner applies."""

    residual: Tensor  # (n,) relative residual of this step
    improved: Tensor  # (n,) bool: a new best iterate (never for NaN)
    converged: Tensor  # (n,) bool: residual < tol


def judge(fz: Tensor, z: Tensor, best_residual: Tensor, tol: float) -> Verdict:
    """The verdict on the step z → f(z) = fz (n, ...) given each sample's best residual (n,).

    >>> v = judge(torch.tensor([[1.0], [float("nan")]]), torch.zeros(2, 1), torch.ones(2), 0.5)
    >>> v.improved.tolist(), v.converged.tolist()  # a NaN step is never best, never converged
    ([False, False], [False, False])
    """
    residual = relative_residual(fz, z).to(best_residual.dtype)
    improved = residual < best_residual  # False for NaN: a NaN step never becomes "best"
    return Verdict(residual, improved, residual < tol)


def _take(inj: tuple[Tensor, ...], idx: Tensor) -> tuple[Tensor, ...]:
    return tuple(t[idx] for t in inj)


class _Tracker:
    """Book-keeping shared by the solvers: which samples still run, their best iterates."""

    def __init__(self, z0: Tensor, tol: float) -> None:
        batch = z0.shape[0]
        self.tol = tol
        self.z = z0
        self.best = z0
        self.active = torch.arange(batch, device=z0.device)
        self.iterations = torch.zeros(batch, dtype=torch.long, device=z0.device)
        self.residual = torch.full((batch,), float("inf"), device=z0.device)
        self.converged = torch.zeros(batch, dtype=torch.bool, device=z0.device)

    def update(self, fz: Tensor, z_prev: Tensor) -> Tensor:
        """Record one step on the active samples; returns the mask of those still running."""
        idx = self.active
        verdict = judge(fz, z_prev, self.residual[idx], self.tol)
        improved, done = verdict.improved, verdict.converged
        self.z = self.z.index_put((idx,), fz)
        self.iterations[idx] += 1
        self.residual[idx] = torch.where(improved, verdict.residual, self.residual[idx])
        self.best = self.best.index_put((idx[improved],), fz[improved])
        self.converged[idx] = done
        self.active = idx[~done]
        return ~done

    def result(self) -> tuple[Tensor, SolverStats]:
        # Converged samples keep their last step; the rest fall back to their best iterate.
        keep = self.converged.view(-1, *([1] * (self.z.dim() - 1)))
        z = torch.where(keep, self.z, self.best)
        return z, SolverStats(self.iterations, self.residual, self.converged)


def fixed_point_iter(
    f: LoopFn, z0: Tensor, inj: tuple[Tensor, ...], tol: float, max_iter: int
) -> tuple[Tensor, SolverStats]:
    """Plain iteration z ← f(z), per sample until its residual < tol or max_iter.

    >>> z, stats = fixed_point_iter(lambda z: torch.cos(z), torch.zeros(2, 1), (), 1e-6, 100)
    >>> round(z[0, 0].item(), 4), bool(stats.converged.all())
    (0.7391, True)
    """
    track = _Tracker(z0, tol)
    for _ in range(max_iter):
        if track.active.numel() == 0:
            break
        z_prev = track.z[track.active]
        fz = f(z_prev, *_take(inj, track.active))
        track.update(fz, z_prev)
    return track.result()


def anderson(
    f: LoopFn,
    z0: Tensor,
    inj: tuple[Tensor, ...],
    tol: float,
    max_iter: int,
    memory: int = 5,
    ridge: float = 1e-4,
) -> tuple[Tensor, SolverStats]:
    """Anderson acceleration (type II, mixing β = 1) with per-sample stopping.

    Keeps the last `memory` iterates X and their images F = f(X) per sample and extrapolates
    with the weights α minimising ‖Σ α_i (F_i − X_i)‖ subject to Σ α_i = 1 (ridge-regularised).

    >>> z0 = torch.zeros(1, 1, dtype=torch.float64)
    >>> _, plain = fixed_point_iter(torch.cos, z0, (), 1e-8, 200)
    >>> z, fast = anderson(torch.cos, z0, (), 1e-8, 200)
    >>> round(z.item(), 6), int(fast.iterations) < int(plain.iterations)
    (0.739085, True)
    """
    shape = z0.shape[1:]
    track = _Tracker(z0, tol)
    # Histories hold full-batch (B, D) tensors; only rows of still-active samples are read, and
    # the active set only shrinks, so every row read was written while that sample was active.
    xs: list[Tensor] = []  # iterates x_k
    gs: list[Tensor] = []  # residuals f(x_k) − x_k
    x_all = z0.flatten(1)
    for _ in range(max_iter):
        idx = track.active
        if idx.numel() == 0:
            break
        x = x_all[idx]
        fx = f(x.view(-1, *shape), *_take(inj, idx)).flatten(1)
        still = track.update(fx.view(-1, *shape), x.view(-1, *shape))
        xs = [*xs, x_all][-memory:]
        gs = [*gs, torch.zeros_like(x_all).index_put((idx,), fx - x)][-memory:]
        x_next = _extrapolate(
            torch.stack([h[idx] for h in xs], 1), torch.stack([h[idx] for h in gs], 1), ridge
        )
        x_all = x_all.index_put((idx[still],), x_next[still])
    return track.result()


def _extrapolate(x_hist: Tensor, g_hist: Tensor, ridge: float) -> Tensor:
    """x_hist, g_hist (n, m, D) → the Anderson step (n, D)."""
    m = x_hist.shape[1]
    if m == 1:
        return x_hist[:, 0] + g_hist[:, 0]
    gram = g_hist @ g_hist.transpose(1, 2)  # (n, m, m)
    scale = gram.diagonal(dim1=1, dim2=2).mean(1, keepdim=True).clamp_min(_EPS)  # (n, 1)
    gram = gram + ridge * scale.unsqueeze(-1) * torch.eye(m, dtype=gram.dtype, device=gram.device)
    ones = torch.ones(x_hist.shape[0], m, 1, dtype=gram.dtype, device=gram.device)
    alpha = torch.linalg.solve(gram, ones)  # (n, m, 1)
    alpha = alpha / alpha.sum(1, keepdim=True)
    return ((x_hist + g_hist) * alpha).sum(1)


SOLVERS: dict[str, Callable[..., tuple[Tensor, SolverStats]]] = {
    "fixed_point": fixed_point_iter,
    "anderson": anderson,
}


def get_solver(name: str) -> Callable[..., tuple[Tensor, SolverStats]]:
    """The solver registered under `name` (a `ModelConfig.solver` value).

    >>> get_solver("newton")
    Traceback (most recent call last):
    ...
    KeyError: "unknown solver 'newton'; choose one of ['anderson', 'fixed_point']"
    """
    if name not in SOLVERS:
        raise KeyError(f"unknown solver {name!r}; choose one of {sorted(SOLVERS)}")
    return SOLVERS[name]
