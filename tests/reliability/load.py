"""Bounded HTTP load for the wire-level tests: closed loop to measure, open loop to overload.

Every request carries a client timeout, every loop a duration, and the open loop a cap on
requests in flight, so no run can outlive its budget. Each request's fate is kept as an
`Outcome`, so a test can account for every single one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np


@dataclass(frozen=True)
class Outcome:
    image: int  # index into the image list
    sent: float  # time.monotonic() when sent
    seconds: float  # until the answer (or the failure)
    status: int | None  # None: no HTTP answer (see `failure`)
    label: str | None = None
    probability: float | None = None  # of `label`
    retry_after: str | None = None
    error: str | None = None  # the `error` of a JSON error body
    failure: str | None = None  # "refused", "disconnected", "timeout", ...


def json_bodies(paths: list[Path], action: str | None = None) -> list[bytes]:
    """Pre-encoded JSON bodies, so the client spends its CPU on sending, not encoding."""
    bodies = []
    for path in paths:
        body = {"image": base64.b64encode(path.read_bytes()).decode()}
        bodies.append(json.dumps(body | ({"action": action} if action else {})).encode())
    return bodies


def client(base: str, connections: int, timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout_s)


async def post(http: httpx.AsyncClient, bodies: list[bytes], index: int) -> Outcome:
    image = index % len(bodies)
    sent = time.monotonic()
    headers = {"content-type": "application/json"}
    try:
        response = await http.post("/predict", content=bodies[image], headers=headers)
    except httpx.ConnectError:
        return Outcome(image, sent, time.monotonic() - sent, None, failure="refused")
    except httpx.TimeoutException:
        return Outcome(image, sent, time.monotonic() - sent, None, failure="timeout")
    except httpx.TransportError as exc:  # the connection closed before an answer
        return Outcome(image, sent, time.monotonic() - sent, None, failure=type(exc).__name__)
    return _answered(image, sent, response)


def _answered(image: int, sent: float, response: httpx.Response) -> Outcome:
    seconds = time.monotonic() - sent
    body = response.json()
    label = body.get("label")
    return Outcome(
        image,
        sent,
        seconds,
        response.status_code,
        label=label,
        probability=body["probabilities"][label] if label else None,
        retry_after=response.headers.get("retry-after"),
        error=body.get("error"),
    )


async def closed_loop(
    base: str, bodies: list[bytes], concurrency: int, duration_s: float, timeout_s: float = 30.0
) -> list[Outcome]:
    """`concurrency` clients, each sending its next request when the last one is answered."""
    outcomes: list[Outcome] = []
    stop_at = time.monotonic() + duration_s
    async with client(base, concurrency, timeout_s) as http:

        async def worker(offset: int) -> None:
            index = offset
            while time.monotonic() < stop_at:
                outcomes.append(await post(http, bodies, index))
                index += concurrency

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return outcomes


async def open_loop(
    base: str,
    bodies: list[bytes],
    rate_per_s: float,
    duration_s: float,
    max_in_flight: int,
    timeout_s: float,
) -> tuple[list[Outcome], int]:
    """Send at a fixed rate whatever the answers; returns the outcomes and the sends skipped
    because `max_in_flight` requests were already waiting (the client's own safety cap)."""
    outcomes: list[Outcome] = []
    skipped = 0
    tasks: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    async with client(base, max_in_flight, timeout_s) as http:

        async def one(index: int) -> None:
            outcomes.append(await post(http, bodies, index))

        for index in range(int(rate_per_s * duration_s)):
            await asyncio.sleep(max(0.0, started + index / rate_per_s - time.monotonic()))
            if len(tasks) >= max_in_flight:
                skipped += 1
                continue
            task = asyncio.create_task(one(index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout_s + 5)
    return outcomes, skipped


def throughput(outcomes: list[Outcome]) -> float:
    """Answered-with-200 requests per second over the span of the run."""
    ok = [o for o in outcomes if o.status == 200]
    if len(ok) < 2:
        return 0.0
    span = max(o.sent + o.seconds for o in ok) - min(o.sent for o in ok)
    return len(ok) / span


def percentile_ms(outcomes: list[Outcome], q: float) -> float:
    seconds = [o.seconds for o in outcomes if o.status == 200]
    return float(np.percentile(seconds, q) * 1000.0) if seconds else float("nan")
