"""Ours against LitServe, the Python serving framework users pick, on the same checkpoint.

    python -m benchmarks.peers [--checkpoint checkpoints/cifar10] [--data-dir data]
        [--rounds 3] [--seconds 8] [--concurrency 1,8,32] [--json reports/bench_peers.json]

Servers (one runs at a time, each on loopback, each restarted every round so the rounds
interleave them):
- `litserve`: LitServe serving the checkpoint as a LitServe user writes it
  (benchmarks/peers/litserve_app.py): the model's public API (`load_checkpoint`, the adaptive
  forward with the agent deciding), PIL decoding, fp32, batches of ≤ 32 with a 2 ms timeout,
  torch on 2 threads.
- `ours fp32`: `python -m service` at fp32, NCHW (DYNALAY_PRECISION=fp32, DYNALAY_LAYOUT=nchw):
  equal numerics.
- `ours fp32 nhwc`: the same fp32 arithmetic with images and convolutions in `channels_last`
  memory (DYNALAY_LAYOUT=nhwc): equal numerics, our layout.
- `ours default`: `python -m service` with its defaults (precision and layout auto: the fastest
  that passes the parity gate on this machine).
- `ours default thread`: the same with the engine on a thread of the service's process
  (DYNALAY_ENGINE_PROCESS=false): the other way to share the cores between HTTP and compute.
The client is the same for all (wrk when installed, `--client`; else a Python closed loop, which
on 2 cores is itself the limit: benchmarks/peers/wrk.py): CIFAR-10 test images encoded as PNG
(what a user uploads), POSTed as multipart `file` to `/predict`, closed loop at each
concurrency, over a new connection per request (`Connection: close`) and over kept-alive
connections. Reported per server, load and round: answers/s, p50 and p99 latency; the medians
over rounds; the ratios of ours to LitServe; and each server's accuracy on the first
--accuracy-n test images. The CPU flags are in the report; no absolute time is claimed outside
a ratio.
"""
