"""`python -m benchmarks.serve`: the two loop schedulings side by side, and the raw engine.

One run spawns one server per scheduling (`DYNALAY_LOOP_SCHEDULING=batch` and `iteration`, same
model, same settings) and drives them with closed-loop HTTP load of real images. At each
concurrency every load runs on every server in short time slices taken in turn, so whatever else
the machine does at the time weighs on all of them alike:
  * adaptive — the agent decides every input;
  * mixed    — half the requests force `straight`, half `loop_all` (each client alternates);
  * straight / loop_all — every input forced (the references for the two ends).
Per load, concurrency and scheduling: throughput, p50/p95/p99 overall and per answered action,
the server-side queue/compute split from /metrics deltas (per concurrency level), and every
answer compared with the same input sent alone; between the turns, the engine alone in process
at the same batch sizes (the servers idle then). Ratios and the checks that decide whether
iteration scheduling does its job come from this one run. Writes JSON.

    python -m benchmarks.serve                            # ~6 min on a 2-core CPU
    python -m benchmarks.serve --levels 16 --loads mixed --duration 20 --slices 20

Modules: `run` (the command line and the interleaved measurement), `loads` (what each load
sends), `raw_engine` (the engine alone), `rounds` (medians over repeated rounds), `ratios` (the
ratios and the targets they are checked against), `report` (meta data and the printed table).
"""
