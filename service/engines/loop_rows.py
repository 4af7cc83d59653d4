"""Samples in the loop pool: per action, their iterates and per-sample fixed-point trackers;
and the samples retired from it, whose answers are still on the device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from model.actions import layer_evaluations
from service.engines.base import SampleResult
from service.engines.device_tensors import fit_trailing, host_index, widest_trailing

Answer = tuple[int, SampleResult]  # (the caller's key, the sample's result)


class LoopRows:
    """Samples of one action in flight, batch-first; per sample its fixed-point tracker.

    z (n, ...) the current iterate, best (n, ...) the lowest-residual iterate, best_residual
    (n,), iterations (n,) long, converged (n,) bool (the last step met tol), inj the stem's
    outputs (n, ...) each. `shapes` keeps each sample's own trailing shapes of (z, *inj), so a
    group can shrink back once its longest member leaves.
    """

    def __init__(self, action, keys, shapes, z, best, best_residual, iterations, converged, inj):
        self.action: int = action
        self.keys: list[int] = keys
        self.shapes: list[tuple[tuple[int, ...], ...]] = shapes
        self.z: Tensor = z
        self.best: Tensor = best
        self.best_residual: Tensor = best_residual
        self.iterations: Tensor = iterations
        self.converged: Tensor = converged
        self.inj: tuple[Tensor, ...] = inj

    @classmethod
    def start(cls, action: int, keys: list[int], z0: Tensor, inj: tuple[Tensor, ...]) -> LoopRows:
        """Samples fresh from the straight pass: the tracker of `fixed_point_iter` at step 0."""
        n, device = len(keys), z0.device
        shape = (tuple(z0.shape[1:]), *(tuple(t.shape[1:]) for t in inj))
        return cls(
            action,
            keys,
            [shape] * n,
            z0,
            z0,
            torch.full((n,), float("inf"), device=device),
            torch.zeros(n, dtype=torch.long, device=device),
            torch.zeros(n, dtype=torch.bool, device=device),
            inj,
        )

    def __len__(self) -> int:
        return len(self.keys)

    def tensors(self) -> list[Tensor]:
        return [self.z, self.best, self.best_residual, self.iterations, self.converged, *self.inj]

    def _replace(self, keys, shapes, tensors: list[Tensor]) -> LoopRows:
        z, best, best_residual, iterations, converged, *inj = tensors
        return LoopRows(
            self.action, keys, shapes, z, best, best_residual, iterations, converged, tuple(inj)
        )

    def cut(self, n: int) -> tuple[LoopRows, LoopRows]:
        """The first n samples and the rest (slices: no copy, no host wait)."""
        head = self._replace(self.keys[:n], self.shapes[:n], [t[:n] for t in self.tensors()])
        tail = self._replace(self.keys[n:], self.shapes[n:], [t[n:] for t in self.tensors()])
        return head.fitted(), tail.fitted()

    def select(self, rows: np.ndarray, device: torch.device) -> LoopRows:
        idx = host_index(rows, device)
        tensors = [t.index_select(0, idx) for t in self.tensors()]
        keys, shapes = [self.keys[r] for r in rows], [self.shapes[r] for r in rows]
        return self._replace(keys, shapes, tensors).fitted()

    def without(self, keys: set[int], device: torch.device) -> LoopRows | None:
        kept = np.asarray([k not in keys for k in self.keys], dtype=bool)
        if kept.all():
            return self
        return self.select(np.flatnonzero(kept), device) if kept.any() else None

    def join(self, other: LoopRows) -> LoopRows:
        """Both groups as one (same action); trailing dimensions zero-padded to the longer."""
        mine, theirs = self.tensors(), other.tensors()
        tensors = []
        for a, b in zip(mine, theirs, strict=True):
            widest = widest_trailing(a, b)
            tensors.append(torch.cat([fit_trailing(a, widest), fit_trailing(b, widest)]))
        return self._replace(self.keys + other.keys, self.shapes + other.shapes, tensors)

    def fitted(self) -> LoopRows:
        """Crop padding no remaining member needs."""
        if not self.keys:
            return self
        # shapes: per member (z_shape, *inj_shapes) → per tensor the widest over the members
        z_shape, *inj_shapes = (
            tuple(int(n) for n in np.max(np.asarray(column), axis=0))
            for column in zip(*self.shapes, strict=True)
        )
        if tuple(self.z.shape[1:]) == z_shape and all(
            tuple(t.shape[1:]) == s for t, s in zip(self.inj, inj_shapes, strict=True)
        ):
            return self
        self.z, self.best = fit_trailing(self.z, z_shape), fit_trailing(self.best, z_shape)
        self.inj = tuple(fit_trailing(t, s) for t, s in zip(self.inj, inj_shapes, strict=True))
        return self


@dataclass(frozen=True)
class FinishedRows:
    """Retired samples whose results are still on the device."""

    action: int
    keys: list[int]
    logits: Tensor  # (n, C)
    iterations: Tensor  # (n,) long
    converged: Tensor  # (n,) bool
    macs: Tensor  # (n,) long, each sample's multiply-adds

    def tensors(self) -> list[Tensor]:
        probabilities = self.logits.float().softmax(dim=1)  # (n, C)
        return [
            probabilities,
            self.logits.argmax(dim=1),
            self.iterations,
            self.converged,
            self.macs,
        ]


ANSWER_TENSORS = 5  # per FinishedRows, in the order of `FinishedRows.tensors`


def decode_answers(finished: list[FinishedRows], host: list[np.ndarray]) -> list[Answer]:
    """The answers of retired samples from their tensors read back (ANSWER_TENSORS per
    FinishedRows, in the order of `FinishedRows.tensors`)."""
    answers, k = [], ANSWER_TENSORS
    for i, done in enumerate(finished):
        probs, classes, iterations, converged, macs = host[k * i : k * i + k]
        probs = probs.reshape(len(done.keys), -1)
        for row, key in enumerate(done.keys):
            n = int(iterations[row])
            result = SampleResult(
                class_index=int(classes[row]),
                probabilities=tuple(probs[row].tolist()),
                action=done.action,
                iterations=n,
                converged=bool(converged[row]),
                layer_evaluations=layer_evaluations(done.action, n),
                macs=int(macs[row]),
            )
            answers.append((key, result))
    return answers
