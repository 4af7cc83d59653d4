"""HTTP load generators for POST /predict (closed and open loop), and the /metrics deltas.

Closed loop (`run_load`): `concurrency` clients each send their next request as soon as the
previous one is answered (perf_analyzer's concurrency mode), for `duration_s` seconds after a
short warm-up. Client k sends bodies k, k+1, k+2, ... (cycling), so a list that alternates two
kinds of request gives every client, and so the whole load, an exact 50/50 mix whatever the
latencies. The offered load follows the server: one that answers some requests sooner gets
more requests.

Open loop (`run_open_load`): requests arrive at a fixed mean rate (Poisson, seeded) whatever the
answers, bodies in order, so two servers compared at one rate get the same work.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class LoadResult:
    concurrency: int
    mode: str  # "adaptive" or a forced action name
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)  # answered with 200
    statuses: Counter = field(default_factory=Counter)
    actions: Counter = field(default_factory=Counter)
    layer_evaluations: list[int] = field(default_factory=list)
    latencies_by_action: dict[str, list[float]] = field(default_factory=dict)
    compared: int = 0  # answers checked against the reference (when one was given)
    differing: int = 0  # of those, answers that differ from it
    mismatches: list[str] = field(default_factory=list)  # the first few differences
    offered_rps: float | None = None  # open loop: the arrival rate

    def extend(self, other: LoadResult) -> None:
        """Add another measurement of the same load (a later time slice) to this one."""
        self.seconds += other.seconds
        self.latencies_ms += other.latencies_ms
        self.statuses.update(other.statuses)
        self.actions.update(other.actions)
        self.layer_evaluations += other.layer_evaluations
        for action, latencies in other.latencies_by_action.items():
            self.latencies_by_action.setdefault(action, []).extend(latencies)
        self.compared += other.compared
        self.differing += other.differing
        self.mismatches = (self.mismatches + other.mismatches)[:5]

    def summary(self) -> dict:
        ok = np.asarray(self.latencies_ms) if self.latencies_ms else np.asarray([np.nan])
        return {
            "mode": self.mode,
            "concurrency": self.concurrency,
            "requests": sum(self.statuses.values()),
            "errors": {str(k): v for k, v in self.statuses.items() if k != 200},
            "throughput_rps": round(len(self.latencies_ms) / self.seconds, 2),
            "latency_ms": _percentiles(ok),
            "by_action": {
                action: {
                    "answers": len(values),
                    "throughput_rps": round(len(values) / self.seconds, 2),
                    "latency_ms": _percentiles(np.asarray(values)),
                }
                for action, values in sorted(self.latencies_by_action.items())
            },
            "actions": dict(self.actions),
            "layer_evaluations_mean": (
                round(float(np.mean(self.layer_evaluations)), 3) if self.layer_evaluations else None
            ),
            "answers_compared": self.compared,
            "answers_differing": self.differing,
            "differences": self.mismatches,
            **({"offered_rps": self.offered_rps} if self.offered_rps is not None else {}),
        }


def _percentiles(latencies: np.ndarray) -> dict[str, float]:
    if latencies.size == 0:
        latencies = np.asarray([np.nan])
    return {
        "mean": round(float(np.mean(latencies)), 3),
        "p50": round(float(np.percentile(latencies, 50)), 3),
        "p95": round(float(np.percentile(latencies, 95)), 3),
        "p99": round(float(np.percentile(latencies, 99)), 3),
    }


def image_bodies_mixed(paths: list[Path], model: str, actions: list[str | None]) -> list[bytes]:
    """Bodies alternating the given actions image by image: [img0/a0, img0/a1, img1/a0, ...]."""
    per_action = [image_bodies(paths, model, action) for action in actions]
    return [body for bodies in zip(*per_action, strict=True) for body in bodies]


def image_bodies(paths: list[Path], model: str, action: str | None) -> list[bytes]:
    """Pre-encoded JSON bodies (base64 images), so the client spends no time encoding."""
    bodies = []
    for path in paths:
        body = {"image": base64.b64encode(path.read_bytes()).decode(), "model": model}
        if action:
            body["action"] = action
        bodies.append(json.dumps(body).encode())
    return bodies


async def run_load(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    duration_s: float,
    mode: str,
    warmup_s: float = 0.5,
    headers: dict[str, str] | None = None,
    reference: list[dict] | None = None,
) -> LoadResult:
    """Closed-loop load; with `reference` (the answer to each body, sent alone) every answer
    under load is compared with it (same label and action, iterations within one, the top
    probabilities within 1e-4)."""
    result = LoadResult(concurrency, mode, duration_s)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    all_headers = {"content-type": "application/json", **(headers or {})}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        start = time.perf_counter()
        measure_from = start + warmup_s
        stop_at = measure_from + duration_s

        async def worker(offset: int) -> None:
            i = offset
            while (now := time.perf_counter()) < stop_at:
                index = i % len(bodies)
                i += 1
                # before measure_from: warm-up (connections, first batches), not recorded
                await _post(client, bodies, index, all_headers, result, reference,
                            measured=now >= measure_from)  # fmt: skip

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return result


async def run_open_load(
    url: str,
    bodies: list[bytes],
    rate_rps: float,
    duration_s: float,
    mode: str,
    warmup_s: float = 0.5,
    headers: dict[str, str] | None = None,
    reference: list[dict] | None = None,
    seed: int = 0,
    concurrency: int = 0,
) -> LoadResult:
    """Open-loop load: request i (body i mod len) is sent at the i-th arrival of a Poisson
    process of `rate_rps`, on its own connection task; those sent after the warm-up are
    measured, and every one is waited for. `concurrency` is only the row's label."""
    result = LoadResult(concurrency, mode, duration_s, offered_rps=rate_rps)
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    all_headers = {"content-type": "application/json", **(headers or {})}
    gaps = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        start = time.perf_counter()
        measure_from, stop_at = start + warmup_s, start + warmup_s + duration_s
        tasks, due, i = [], start, 0
        while due < stop_at:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            send = _post(client, bodies, i % len(bodies), all_headers, result, reference,
                         measured=due >= measure_from)  # fmt: skip
            tasks.append(asyncio.create_task(send))
            due += gaps.expovariate(rate_rps)
            i += 1
        await asyncio.gather(*tasks)
    return result


async def _post(
    client: httpx.AsyncClient,
    bodies: list[bytes],
    index: int,
    headers: dict[str, str],
    result: LoadResult,
    reference: list[dict] | None,
    measured: bool,
) -> None:
    """POST body `index`; when `measured`, record its latency and compare its answer."""
    sent = time.perf_counter()
    response = await client.post("/predict", content=bodies[index], headers=headers)
    if not measured:
        return
    _record(result, response, (time.perf_counter() - sent) * 1000.0)
    if reference is not None and response.status_code == 200:
        _compare(result, index, response.json(), reference[index])


def _record(result: LoadResult, response: httpx.Response, latency_ms: float) -> None:
    result.statuses[response.status_code] += 1
    if response.status_code == 200:
        answer = response.json()
        result.latencies_ms.append(latency_ms)
        result.actions[answer["action"]] += 1
        result.layer_evaluations.append(answer["layer_evaluations"])
        result.latencies_by_action.setdefault(answer["action"], []).append(latency_ms)


def _compare(result: LoadResult, index: int, answer: dict, want: dict) -> None:
    result.compared += 1
    problems = answer_differences(want, answer)
    if problems:
        result.differing += 1
        if len(result.mismatches) < 5:
            result.mismatches.append(f"body {index}: " + ", ".join(problems))


def answer_differences(want: dict, got: dict, prob_tol: float = 1e-4) -> list[str]:
    """How two /predict answers to one input differ: label, action, iterations by more than
    one, any of `want`'s top probabilities by more than `prob_tol`. Empty: the same answer."""
    problems = [f"{k} {got[k]!r} != {want[k]!r}" for k in ("label", "action") if got[k] != want[k]]
    if abs(got["iterations"] - want["iterations"]) > 1:
        problems.append(f"iterations {got['iterations']} vs {want['iterations']}")
    top = want["probabilities"]
    gap = max(
        (abs(p - got["probabilities"].get(label, 0.0)) for label, p in top.items()), default=0
    )
    if gap > prob_tol:
        problems.append(f"probabilities differ by {gap:.2e}")
    return problems


def answer_alone(url: str, body: bytes, headers: dict[str, str] | None = None) -> dict:
    """One request with nothing else in flight: the reference answer to `body`."""
    all_headers = {"content-type": "application/json", **(headers or {})}
    response = httpx.post(f"{url}/predict", content=body, headers=all_headers, timeout=60)
    response.raise_for_status()
    return response.json()


def scrape(url: str, model: str) -> dict[str, float]:
    """Sums and counts of the server's queue/compute/batch histograms for one model."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") != model:
                continue
            if sample.name.endswith(("_sum", "_count")):
                section = sample.labels.get("section")
                key = f"{sample.name}[{section}]" if section else sample.name
                values[key] = values.get(key, 0.0) + sample.value
    return values


def server_split(before: dict[str, float], after: dict[str, float]) -> dict:
    """Mean queue wait per request, compute per batch by section, mean batch size (deltas)."""

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    def mean_ms(name: str, section: str | None = None) -> float | None:
        label = f"[{section}]" if section else ""
        count = delta(f"{name}_count{label}")
        return round(1000.0 * delta(f"{name}_sum{label}") / count, 3) if count else None

    batches = delta("dynalay_batch_size_count")
    sections = ("straight", "agent", "loop", "head")
    return {
        "mean_batch_size": round(delta("dynalay_batch_size_sum") / batches, 2) if batches else None,
        "request_ms_mean": mean_ms("dynalay_request_duration_seconds"),
        "queue_ms_mean": mean_ms("dynalay_queue_duration_seconds"),
        "preprocess_ms_mean": mean_ms("dynalay_compute_duration_seconds", "preprocess"),
        "compute_ms_per_batch": {
            section: mean_ms("dynalay_compute_duration_seconds", section) for section in sections
        },
    }
