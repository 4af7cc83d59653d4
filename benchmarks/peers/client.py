"""The peer benchmark's client: pre-encoded multipart uploads, a closed loop, two connection modes.

Every server gets the same bytes: each PNG is wrapped once, before any timing, in a multipart
body with field `file` (what `curl -F file=@x.png` sends), so the client spends its share of the
two cores on sending and receiving only.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np

BOUNDARY = "dynalay-bench-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
WARMUP_S = 1.0


def multipart_bodies(pngs: list[bytes]) -> list[tuple[bytes, str]]:
    """(body, content type) per PNG."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return [(head + png + tail, CONTENT_TYPE) for png in pngs]


async def run_load(
    url: str,
    bodies: list[tuple[bytes, str]],
    concurrency: int,
    seconds: float,
    keep_alive: bool,
    once: bool = False,
) -> dict:
    """`concurrency` clients POST /predict back to back for `seconds` (after WARMUP_S), cycling
    through `bodies`; keep_alive False sends `Connection: close`, so every request opens a new
    TCP connection. once: send each body exactly once instead, and return the answers'
    `class_index` in body order."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    extra = {} if keep_alive else {"connection": "close"}
    latencies: list[float] = []
    answers: list[int] = [-1] * len(bodies)
    failures = 0
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        start = time.perf_counter()
        measure_from = start + (0 if once else WARMUP_S)
        stop_at = measure_from + seconds
        next_body = iter(range(len(bodies)))

        async def send(index: int) -> httpx.Response:
            body, content_type = bodies[index]
            headers = {"content-type": content_type, **extra}
            return await client.post("/predict", content=body, headers=headers)

        async def worker(offset: int) -> None:
            nonlocal failures
            i = offset
            while True:
                if once:
                    index = next(next_body, None)
                    if index is None:
                        return
                elif (now := time.perf_counter()) >= stop_at:
                    return
                else:
                    index = i % len(bodies)
                    i += 1
                sent = time.perf_counter()
                response = await send(index)
                if response.status_code != 200:
                    failures += 1
                    continue
                if once:
                    answers[index] = response.json()["class_index"]
                elif now >= measure_from:
                    latencies.append((time.perf_counter() - sent) * 1000.0)

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    if once:
        return {"answers": answers, "failures": failures}
    ms = np.asarray(latencies) if latencies else np.asarray([np.nan])
    return {
        "answers_per_s": round(len(latencies) / seconds, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "failures": failures,
    }
