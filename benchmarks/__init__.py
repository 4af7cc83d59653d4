"""Benchmarks and load tools for the service; each is a `python -m benchmarks.NAME` script.

They drive the service from outside (spawned `python -m service` processes, HTTP and gRPC
clients) or time an engine in process, print a table and write JSON under reports/. They use
`service` and `model` through their public names only, and nothing in `service` imports them:
their clients (httpx, tritonclient) are development dependencies, not the served image's.

    python -m benchmarks.serve          # both loop schedulings under image load (bench-serve)
    python -m benchmarks.engines CKPT   # the PyTorch and ONNX Runtime engines side by side
    python -m benchmarks.protocols      # JSON, binary and gRPC wire formats on one server
    python -m benchmarks.ray_replicas   # Ray Serve with 1, 2, ... replicas against one process
"""
