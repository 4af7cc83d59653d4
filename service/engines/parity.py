"""The parity gate: a reduced precision serves only if it answers like fp32; `auto` takes the
fastest mode that passes.

At load, against the fp32 (NCHW) answers on the checkpoint's calibration set
(model/calibration.py: training images), a reduced-precision mode must agree on at least
`min_label_agreement` of the labels and `min_action_agreement` of the agent's actions. An
explicitly requested precision that fails is refused (`PrecisionError`: the model does not
load); under `auto` it is skipped, and fp32, which always passes, remains. Without a
calibration set nothing can be checked: `auto` means fp32 and an explicit reduced precision
is refused.

Speed is measured in-process, once, on what the gate runs anyway: the calibration set in
batches of CALIBRATION_BATCH (after one warm-up batch) per precision, and per layout a tiny
probe of a few inputs. Engines of one checkpoint share its network, so `build(mode)` may
re-lay the weights: only the engine built last is valid.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

from service.engines.base import Engine, EngineInput, SampleResult
from service.engines.precision import (
    AUTO,
    LAYOUTS,
    REDUCED,
    Mode,
    PrecisionError,
    PrecisionPolicy,
    unsupported,
)
from service.engines.stepping import run_batch

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 32  # the service's default max batch: the gate times what serving runs
PROBE_RUNS = 2  # timed runs of the layout probe per layout (the fastest counts)

Build = Callable[[Mode], Engine]


@dataclass(frozen=True)
class ParityReport:
    """One mode against fp32 on the calibration set."""

    mode: Mode
    n: int  # calibration inputs
    label_agreement: float  # share with fp32's class
    action_agreement: float  # share with fp32's action
    seconds: float  # one pass over the set

    def failures(self, policy: PrecisionPolicy) -> list[str]:
        """What fails the gate, in words; empty when the mode passes."""
        checks = [
            ("labels", self.label_agreement, policy.min_label_agreement),
            ("actions", self.action_agreement, policy.min_action_agreement),
        ]
        return [
            f"{share:.2%} of {what} agree with fp32 (needs ≥ {bound:.2%})"
            for what, share, bound in checks
            if share < bound
        ]


def agreement(
    reference: Sequence[SampleResult], candidate: Sequence[SampleResult]
) -> tuple[float, float]:
    """Shares of samples with the reference's class and with its action."""
    pairs = list(zip(reference, candidate, strict=True))
    labels = sum(a.class_index == b.class_index for a, b in pairs)
    actions = sum(a.action == b.action for a, b in pairs)
    return labels / len(pairs), actions / len(pairs)


def run_set(
    engine: Engine, inputs: Sequence[EngineInput], batch_size: int = CALIBRATION_BATCH
) -> tuple[list[SampleResult], float]:
    """Every input's answer, in batches, and the seconds of that pass (after a warm-up batch:
    one-off kernel and weight-cast costs stay out of the timing)."""
    batches = [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]
    spec = engine.spec()
    run_batch(spec, batches[0])
    started = time.perf_counter()
    samples = [s for batch in batches for s in run_batch(spec, batch).samples]
    return samples, time.perf_counter() - started


def choose_layout(
    build: Build, precision: str, layout: str, probe: Sequence[EngineInput] | None
) -> str:
    """`layout`, or under auto the faster one on `probe` (None: no layout to choose, text)."""
    if layout != AUTO:
        return layout
    if probe is None:
        return LAYOUTS[0]
    seconds = {}
    for candidate in LAYOUTS:
        engine = build(Mode(precision, candidate))
        run_batch(engine.spec(), probe)  # warm-up
        seconds[candidate] = min(_timed(engine, probe) for _ in range(PROBE_RUNS))
    return min(seconds, key=seconds.__getitem__)


def select_mode(
    build: Build,
    policy: PrecisionPolicy,
    device: torch.device,
    calibration: Sequence[EngineInput] | None,
    probe: Sequence[EngineInput] | None,
    reduced: Sequence[str] | None = None,
    why_not: Callable[[str], str] | None = None,
) -> tuple[Mode, list[ParityReport]]:
    """The mode to serve and the gate's reports; raises PrecisionError as the module says.

    reduced: the precisions the engine offers besides fp32 (default: the PyTorch engine's,
    `precision.REDUCED`); why_not(precision): why one cannot run here, "" when it can (default:
    `precision.unsupported` on `device`)."""
    if why_not is None:
        why_not = partial(unsupported, device=device)
    offered = list(REDUCED if reduced is None else reduced)
    precisions = candidate_precisions(policy, calibration is not None, offered, why_not)
    fp32 = Mode("fp32", choose_layout(build, "fp32", policy.layout, probe))
    if precisions == ["fp32"] or calibration is None:
        return fp32, []
    # The reference is fp32 in its own (faster) layout: the layouts differ only in the order of
    # float32 sums, and its pass is also fp32's timing under auto.
    reference, reference_seconds = run_set(build(fp32), calibration)
    reports = [ParityReport(fp32, len(reference), 1.0, 1.0, reference_seconds)]
    for precision in (p for p in precisions if p != "fp32"):
        mode = Mode(precision, choose_layout(build, precision, policy.layout, probe))
        samples, seconds = run_set(build(mode), calibration)
        labels, actions = agreement(reference, samples)
        reports.append(ParityReport(mode, len(samples), labels, actions, seconds))
    if policy.precision != AUTO:  # fp32 was only the reference
        reports = reports[1:]
    for report in reports:
        log.info("parity %s: %s", report.mode, _summary(report, policy))
    best = fastest_passing(reports, policy)
    if best is None:  # only an explicit precision can get here: fp32 always passes
        report = reports[0]
        raise PrecisionError(
            f"precision {report.mode.precision} refused by the parity gate: on the "
            f"checkpoint's {report.n} calibration images, {'; '.join(report.failures(policy))}"
            "; serve fp32 (or auto, which falls back to it)"
        )
    return best, reports


def fastest_passing(reports: Sequence[ParityReport], policy: PrecisionPolicy) -> Mode | None:
    """The fastest mode that passes the gate; None when none does."""
    passing = [r for r in reports if not r.failures(policy)]
    return min(passing, key=lambda r: r.seconds).mode if passing else None


def candidate_precisions(
    policy: PrecisionPolicy, calibrated: bool, offered: Sequence[str], why_not: Callable[[str], str]
) -> list[str]:
    """The precisions to try: one when asked for, else fp32 and the offered ones that run."""
    if policy.precision == AUTO:
        if not calibrated:
            log.info("precision auto: the checkpoint ships no calibration set, fp32 serves")
            return ["fp32"]
        return ["fp32", *(p for p in offered if not why_not(p))]
    why = why_not(policy.precision)
    if why:
        raise PrecisionError(f"precision {policy.precision} cannot run here: {why}")
    if policy.precision != "fp32" and not calibrated:
        raise PrecisionError(
            f"precision {policy.precision} needs the parity gate, but the checkpoint ships no "
            "calibration set (add one with scripts/calibration_set.py) — serve fp32 or auto"
        )
    return [policy.precision]


def _timed(engine: Engine, batch: Sequence[EngineInput]) -> float:
    spec = engine.spec()
    started = time.perf_counter()
    run_batch(spec, batch)
    return time.perf_counter() - started


def _summary(report: ParityReport, policy: PrecisionPolicy) -> str:
    verdict = "; ".join(report.failures(policy)) or "passes"
    return (
        f"labels {report.label_agreement:.2%}, actions {report.action_agreement:.2%} of "
        f"{report.n}, {report.seconds:.3f} s per pass: {verdict}"
    )
