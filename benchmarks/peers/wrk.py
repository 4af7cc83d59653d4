"""The peer benchmark's load, driven by `wrk` (C, one thread) when it is installed.

A closed loop in Python (client.py) costs the client 2–4 ms of CPU per answer, and on a 2-core
machine that client, not the server, becomes the limit: two client processes answered 30% more
than one on our server, 5% more on LitServe. wrk sends the same pre-encoded multipart bodies
for a fraction of that, so the ratios measure the servers. Each of wrk's connections is one
closed-loop client; `Connection: close` makes it reconnect after every answer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

# Runs in each wrk thread's Lua state: cycles through the bodies (one file, their lengths in a
# second) and prints the summary as one JSON line when the run is done.
SCRIPT = r"""
local bodies, n, i = {}, 0, 0
local headers = {}

function init(args)
  local file = io.open(args[1], "rb")
  local data = file:read("*a")
  file:close()
  local pos = 1
  for line in io.lines(args[2]) do
    local size = tonumber(line)
    n = n + 1
    bodies[n] = data:sub(pos, pos + size - 1)
    pos = pos + size
  end
  headers["Content-Type"] = args[3]
  if args[4] == "close" then headers["Connection"] = "close" end
end

function request()
  i = i % n + 1
  return wrk.format("POST", "/predict", headers, bodies[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""

WARMUP_S = 1


def available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str, bodies: list[tuple[bytes, str]], concurrency: int, seconds: float, keep_alive: bool
) -> dict:
    """As client.run_load: `concurrency` connections POST /predict back to back for `seconds`
    (after a WARMUP_S run that is not counted)."""
    content_type = bodies[0][1]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bodies").write_bytes(b"".join(body for body, _ in bodies))
        (folder / "sizes").write_text("".join(f"{len(body)}\n" for body, _ in bodies))
        (folder / "load.lua").write_text(SCRIPT)
        args = [str(folder / "bodies"), str(folder / "sizes"), content_type]
        args.append("keep-alive" if keep_alive else "close")
        _wrk(url, folder / "load.lua", args, concurrency, WARMUP_S)
        summary = _wrk(url, folder / "load.lua", args, concurrency, seconds)
    duration_s = summary["duration_us"] / 1e6
    answered = summary["requests"] - summary["non_2xx"]
    return {
        "answers_per_s": round(answered / duration_s, 2),
        "p50_ms": round(summary["p50_us"] / 1000.0, 2),
        "p99_ms": round(summary["p99_us"] / 1000.0, 2),
        "failures": summary["non_2xx"] + summary["socket_errors"],
    }


def _wrk(url: str, script: Path, args: list[str], concurrency: int, seconds: float) -> dict:
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "60s"]
    command += ["-s", str(script), url, "--", *args]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])
