"""One loop for every engine: straight passes and a bounded pool of fixed-point loops, stepped.

An engine supplies the parts of its network (`model.parts.NetworkParts`: PyTorch modules or
ONNX Runtime sessions), how it collates a batch, and the loop settings of its checkpoint
(`EngineSpec`, service/engines/base.py). `Stepper` runs the algorithm from those parts, one
piece per call:

- `straight(batch, keys)`: stem, L1..L3, head, profile and agent over a new batch. Inputs the
  agent keeps straight (or that force `straight`) are answered at once, and so are those that
  take `tta` (their three more views run as one batch right away: no loop to schedule); the
  others wait, with their straight-pass state, for a place in the pool.
- `step()`: admits waiting samples up to the pool's capacity (first come, first served), runs
  ONE fixed-point iteration over the pool, grouped by action (action k iterates L_k∘…∘L1, so
  each action is its own batched call), and retires the samples whose loop stopped: the finish
  (layers k+1..3, head) runs on them and they are answered.

Per-sample convergence is the model's (model/solvers.py `fixed_point_iter`): a sample stops
when its relative residual drops below `tol`, or after `max_iter` iterations with its best
iterate. Only the sample's own rows are ever combined with its state, so what a sample gets does
not depend on which others share a step (up to float rounding of batched kernels). A solver that
needs a history across iterations (Anderson) cannot be cut into independent steps: its samples
are solved completely in the step that admits them, with the model's own solver.

States of different shapes (text padded to different lengths) share a group by zero-padding
their trailing dimensions, exactly as collating a batch pads its shorter rows; a group is cropped
again when its longest member leaves.

Host waits: a step reads back once. On CUDA the answers of the samples retired in a step are
read back together with the next step's stop mask, so an iteration costs one wait and nothing
is read per sample; on the CPU, where a read costs nothing, they are read at once.

Batch scheduling is the same stepper run to the end (`Stepper.run`, `run_batch`): every
engine's answers come from this one loop, whichever scheduler asked.

The samples in flight and their trackers are `service/engines/loop_rows.py`; the tensor helpers
(one read-back, host indices, padding) `service/engines/device_tensors.py`.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from model.actions import N_LAYERS, N_LOOP_ACTIONS, TTA, layer_evaluations
from model.macs import tokens_of
from model.network import (
    StraightPass,
    finish,
    loop_iteration,
    loop_start,
    straight_pass,
    tta_logits,
)
from model.solvers import get_solver, judge
from service.engines.base import BatchOutput, EngineInput, EngineSpec, SampleResult
from service.engines.device_tensors import host_index, per_row, read_back
from service.engines.loop_rows import Answer, FinishedRows, LoopRows, decode_answers
from service.engines.sections import SectionClock

STEPWISE_SOLVER = "fixed_point"  # the solver whose iterations are independent steps


@dataclass(frozen=True)
class StraightOutcome:
    answered: list[Answer]  # samples kept straight: final
    looped: list[int]  # keys now waiting for (or in) the loop pool
    seconds: dict[str, float]  # "straight" (the pass), "agent" (decision and read-back)


@dataclass(frozen=True)
class StepOutcome:
    answered: list[Answer]  # samples whose loop stopped (on CUDA: those of the step before)
    stepped: int  # samples that ran this step's iteration
    iterating: int  # pool occupancy after the step
    waiting: int  # samples past their straight pass, waiting for room in the pool
    seconds: dict[str, float]  # "loop" (admit, iterate, read back), "head" (finish, answers)


class Stepper:
    """The straight passes and the loop pool of one engine; call from one thread only."""

    def __init__(self, spec: EngineSpec, capacity: int, defer_reads: bool | None = None) -> None:
        """`defer_reads`: read retired answers back with the next step (default: on CUDA)."""
        if capacity < 1:
            raise ValueError(f"the loop pool needs a capacity ≥ 1, got {capacity}")
        self.spec = spec
        self.capacity = capacity
        self._stepwise = spec.solver == STEPWISE_SOLVER
        self._solve = get_solver(spec.solver)
        self._defer_reads = spec.device.type == "cuda" if defer_reads is None else defer_reads
        self._pool: dict[int, LoopRows] = {}  # action → its samples in the pool
        self._waiting: collections.deque[LoopRows] = collections.deque()
        self._unread: list[FinishedRows] = []  # retired, answers not yet on the host (CUDA)

    @property
    def iterating(self) -> int:
        return sum(len(rows) for rows in self._pool.values())

    @property
    def iterating_keys(self) -> list[int]:
        """Keys of the samples in the pool, by action."""
        return [key for action in sorted(self._pool) for key in self._pool[action].keys]

    @property
    def waiting(self) -> int:
        return sum(len(rows) for rows in self._waiting)

    @property
    def busy(self) -> bool:
        """Something is left for step(): samples to iterate or answers to read back."""
        return bool(self._pool or self._waiting or self._unread)

    def clear(self) -> None:
        """Forget every sample in flight (after a failed step: their callers were answered)."""
        self._pool.clear()
        self._waiting.clear()
        self._unread.clear()

    def straight(self, batch: Sequence[EngineInput], keys: Sequence[int]) -> StraightOutcome:
        with torch.inference_mode():
            return self._straight(batch, keys)

    def step(self, evict: Collection[int] = ()) -> StepOutcome:
        """Drop `evict` (callers gone), admit, iterate once, retire; see the module doc."""
        with torch.inference_mode():
            return self._step(set(evict))

    def run(self, batch: Sequence[EngineInput]) -> BatchOutput:
        """A whole batch to the end (batch scheduling); the pool must be empty."""
        if self.busy:
            raise RuntimeError("run() needs an idle stepper")
        keys = range(len(batch))
        straight = self.straight(batch, keys)
        answers, seconds = dict(straight.answered), dict(straight.seconds)
        seconds.update(loop=0.0, head=0.0)
        while self.busy:
            step = self.step()
            answers.update(step.answered)
            for section, lap in step.seconds.items():
                seconds[section] += lap
        return BatchOutput([answers[key] for key in keys], seconds)

    # ---- straight pass and agent --------------------------------------------------------

    def _straight(self, batch: Sequence[EngineInput], keys: Sequence[int]) -> StraightOutcome:
        parts, device = self.spec.parts, self.spec.device
        clock = SectionClock(device)
        x, lengths = self.spec.collate(batch)
        passed = straight_pass(parts, x, lengths)
        clock.lap("straight")
        actions = _apply_forced(parts.agent(passed.profile).argmax(dim=1), batch, device)
        probabilities = passed.logits.float().softmax(dim=1)  # (B, C)
        tokens = tokens_of(passed.inj)
        none = torch.zeros_like(actions)
        straight_macs = self.spec.macs.per_sample(none, none, tokens)
        views_macs = self.spec.macs.per_sample(none + TTA, none, tokens)
        chosen, probs, classes, macs, macs_tta = read_back(
            [actions, probabilities, passed.logits.argmax(dim=1), straight_macs, views_macs]
        )
        clock.lap("agent")
        chosen = chosen.astype(np.int64)
        probs = probs.reshape(len(batch), -1)
        answered = [
            (keys[row], _straight_result(int(classes[row]), probs[row], int(macs[row])))
            for row in np.flatnonzero(chosen == 0)
        ]
        answered += self._views(passed, chosen, keys, macs_tta)
        looped = []
        for action in range(1, N_LOOP_ACTIONS):
            rows = np.flatnonzero(chosen == action)
            if rows.size:
                idx = host_index(rows, device)
                state = loop_start(parts, action, passed).index_select(0, idx)
                inj = tuple(t.index_select(0, idx) for t in passed.inj)
                self._waiting.append(LoopRows.start(action, [keys[r] for r in rows], state, inj))
                looped += [keys[r] for r in rows]
        return StraightOutcome(answered, looped, clock.seconds)

    def _views(
        self, passed: StraightPass, chosen: np.ndarray, keys: Sequence[int], macs: np.ndarray
    ) -> list[Answer]:
        """Answers of the rows that take `tta`: their three more views, one batched pass."""
        rows = np.flatnonzero(chosen == TTA)
        if rows.size == 0:
            return []
        idx = host_index(rows, self.spec.device)
        logits = tta_logits(self.spec.parts, passed.x.index_select(0, idx), passed.logits[idx])
        probs, classes = read_back([logits.float().softmax(dim=1), logits.argmax(dim=1)])
        evals = layer_evaluations(TTA, 0)
        return [
            (
                keys[row],
                SampleResult(int(c), tuple(p.tolist()), TTA, 0, True, evals, int(macs[row])),
            )
            for row, c, p in zip(rows, classes, probs.reshape(rows.size, -1), strict=True)
        ]

    # ---- one loop step ------------------------------------------------------------------

    def _step(self, evict: set[int]) -> StepOutcome:
        clock = SectionClock(self.spec.device, wait=False)  # the read-back is the one wait
        if evict:
            self._evict(evict)
        self._admit()
        groups = list(self._pool.values())
        stepped = sum(len(rows) for rows in groups)
        stops = [self._iterate(rows) for rows in groups]  # (n_k,) bool each, on the device
        unread, self._unread = self._unread, []
        host = read_back(stops + [t for done in unread for t in done.tensors()])
        answered = decode_answers(unread, host[len(stops) :])
        clock.lap("loop")
        host_stops = host[: len(stops)]
        retired = [
            self._retire(rows, stop.astype(bool))
            for rows, stop in zip(groups, host_stops, strict=True)
        ]
        finished = [done for done in retired if done is not None]
        if self._defer_reads:
            self._unread = finished
        elif finished:
            retired_host = read_back([t for done in finished for t in done.tensors()])
            answered += decode_answers(finished, retired_host)
        clock.lap("head")
        return StepOutcome(answered, stepped, self.iterating, self.waiting, clock.seconds)

    def _admit(self) -> None:
        room = self.capacity - self.iterating
        while room > 0 and self._waiting:
            rows = self._waiting.popleft()
            if len(rows) > room:
                rows, rest = rows.cut(room)
                self._waiting.appendleft(rest)
            room -= len(rows)
            held = self._pool.get(rows.action)
            self._pool[rows.action] = rows if held is None else held.join(rows)

    def _iterate(self, rows: LoopRows) -> Tensor:
        """One iteration of rows' loop, in place; returns which rows stop now."""
        parts, spec = self.spec.parts, self.spec
        if not self._stepwise:
            return self._solve_whole(rows)
        fz = loop_iteration(parts, rows.action, rows.z, rows.inj)
        verdict = judge(fz, rows.z, rows.best_residual, spec.tol)  # the solver's own rule
        rows.best = torch.where(per_row(verdict.improved, fz), fz, rows.best)
        rows.best_residual = torch.where(verdict.improved, verdict.residual, rows.best_residual)
        rows.z = fz
        rows.iterations = rows.iterations + 1
        rows.converged = verdict.converged
        return rows.converged | (rows.iterations >= spec.max_iter)

    def _solve_whole(self, rows: LoopRows) -> Tensor:
        parts, spec = self.spec.parts, self.spec

        def composite(z: Tensor, *inj: Tensor) -> Tensor:
            return loop_iteration(parts, rows.action, z, inj)

        z, stats = self._solve(composite, rows.z, rows.inj, spec.tol, spec.max_iter)
        rows.z = rows.best = z  # the solver already picked last or best iterate
        rows.iterations, rows.converged = stats.iterations, stats.converged
        return torch.ones_like(stats.converged)

    def _retire(self, rows: LoopRows, stop: np.ndarray) -> FinishedRows | None:
        """Take the stopped rows out of the pool and run their finish (left on the device)."""
        stopped = np.flatnonzero(stop)
        if stopped.size == 0:
            return None
        if stopped.size == len(rows):
            del self._pool[rows.action]
            done = rows
        else:
            done = rows.select(stopped, self.spec.device)
            self._pool[rows.action] = rows.select(np.flatnonzero(~stop), self.spec.device)
        z = torch.where(per_row(done.converged, done.z), done.z, done.best)
        logits = finish(self.spec.parts, done.action, z, done.inj)
        actions = torch.full_like(done.iterations, done.action)
        macs = self.spec.macs.per_sample(actions, done.iterations, tokens_of(done.inj))
        return FinishedRows(done.action, done.keys, logits, done.iterations, done.converged, macs)

    def _evict(self, keys: set[int]) -> None:
        device = self.spec.device
        for action, rows in list(self._pool.items()):
            kept = rows.without(keys, device)
            if kept is None:
                del self._pool[action]
            else:
                self._pool[action] = kept
        waiting = (rows.without(keys, device) for rows in self._waiting)
        self._waiting = collections.deque(rows for rows in waiting if rows is not None)


def run_batch(spec: EngineSpec, batch: Sequence[EngineInput]) -> BatchOutput:
    """Batch scheduling: the whole batch through a stepper of its own size, to the end."""
    return Stepper(spec, capacity=max(len(batch), 1)).run(batch)


def _straight_result(class_index: int, probabilities: np.ndarray, macs: int) -> SampleResult:
    return SampleResult(class_index, tuple(probabilities.tolist()), 0, 0, True, N_LAYERS, macs)


def _apply_forced(actions: Tensor, batch: Sequence[EngineInput], device: torch.device) -> Tensor:
    forced = [(row, item.action) for row, item in enumerate(batch) if item.action is not None]
    if not forced:
        return actions
    rows, values = zip(*forced, strict=True)
    idx = host_index(list(rows), device)
    return actions.index_put((idx,), host_index(list(values), device).to(actions.dtype))
