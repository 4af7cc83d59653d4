"""Service configuration: one typed object read from `DYNALAY_*` environment variables.

Built once by the caller (`python -m service`, a test, the benchmark) and handed to
`create_app(settings)`; nothing reads the environment at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # env_ignore_empty: `DYNALAY_X=` (compose files, .env) means "use the default".
    model_config = SettingsConfigDict(
        env_prefix="DYNALAY_", env_ignore_empty=True, extra="ignore", frozen=True
    )

    host: str = "127.0.0.1"  # loopback by default; containers set DYNALAY_HOST=0.0.0.0
    port: int = Field(8000, ge=0, le=65535)
    # The KServe v2 / Triton gRPC inference service (Triton's port by default); 0 turns it off.
    grpc_port: int = Field(8001, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    model_dir: Path = Path("checkpoints")  # every sub-directory holding a manifest.json is served
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when present, else CPU
    engine: str = "torch"  # a name in service.engines.ENGINES (onnx plugs in there)
    # The onnx engine exports a checkpoint that carries no ONNX parts into this cache on load
    # (verified on every load; one entry per weights + config).
    onnx_cache_dir: Path = Field(default_factory=lambda: default_onnx_cache_dir())
    warmup: bool = True  # run every action once per model before /readyz turns 200
    # Each model's engine in a process of its own (service/engines/process.py), so HTTP and
    # compute run in parallel; false: on a thread of the service's process.
    engine_process: bool = True
    # What the engines compute in (service/engines/precision.py): "auto" serves the fastest
    # of fp32 and the reduced precisions the engine runs natively on this device (torch: bf16
    # on CPUs with avx512_bf16 or AMX and CUDA, fp16 on CUDA; onnx: int8 on a CPU) that pass
    # the parity gate on the checkpoint's calibration set (fp32 without one); an explicit one
    # that fails is refused at load.
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "auto"
    layout: Literal["auto", "nchw", "nhwc"] = "auto"  # image memory layout; auto: measured
    # The parity gate: shares of the calibration set's labels and agent actions a reduced
    # precision must answer as fp32 does.
    parity_min_label_agreement: float = Field(0.995, ge=0, le=1)
    parity_min_action_agreement: float = Field(0.99, ge=0, le=1)
    # A checkpoint that fails to load: "fail" serves nothing (`python -m service` exits 3);
    # "skip" serves the other models and reports that one as not ready.
    on_load_error: Literal["fail", "skip"] = "fail"
    # While serving (repository/model_control.py): "none" keeps what was loaded at start; "poll"
    # rescans model_dir every poll_s and loads new or changed models, unloads removed ones;
    # "explicit" loads nothing at start, only what the repository API asks for.
    model_control: Literal["none", "poll", "explicit"] = "none"
    poll_s: float = Field(5.0, gt=0)

    # How loops are batched: "iteration" answers straight inputs after the straight pass and
    # runs loops one fixed-point iteration per step in a pool of `loop_pool_size` samples;
    # "batch" answers a batch when its slowest loop has converged (service/scheduling/scheduler.py).
    loop_scheduling: Literal["iteration", "batch"] = "iteration"
    # Samples iterating at once per model (iteration); unset: max_batch_size, so under overload
    # a loop gets the share of the CPU it gets in a batch, and not a slice of an ever-larger pool.
    loop_pool_size: int | None = Field(None, ge=1)

    max_batch_size: int = Field(32, ge=1)
    max_queue_delay_ms: float = Field(2.0, ge=0)  # batching window, timed from the oldest request
    max_queue: int = Field(256, ge=1)  # queued requests per model; beyond this: 503 + Retry-After
    request_timeout_ms: float = Field(10_000, gt=0)  # deadline from arrival; past it: 504
    retry_after_s: int = Field(1, ge=0)  # the Retry-After we send with 503s

    # SIGTERM: /readyz turns 503 and new predictions get 503 for drain_delay_s (load balancers
    # notice), then the listener closes and accepted requests get shutdown_grace_s to finish.
    # Their sum stays below compose's stop_grace_period (30 s).
    drain_delay_s: float = Field(1.0, ge=0)
    shutdown_grace_s: float = Field(15.0, gt=0)

    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1)  # whole request body; beyond: 413
    max_image_pixels: int = Field(40_000_000, ge=1)  # width × height before decoding (bombs)
    max_text_bytes: int = Field(64 * 1024, ge=1)  # UTF-8 bytes of a text input; beyond: 413
    top_k: int = Field(5, ge=1)  # labels returned in `probabilities`

    # Connection limits, enforced before uvicorn parses anything (service/connection_guard).
    # Memory held per connection is bounded by max_head_bytes plus ~10 KiB of state.
    max_request_line_bytes: int = Field(8192, ge=64)  # method, target, version; beyond: 414
    max_header_line_bytes: int = Field(8192, ge=64)  # one header line; beyond: 431
    max_head_bytes: int = Field(32768, ge=256)  # request line and headers together; beyond: 431
    max_headers: int = Field(100, ge=1)  # header lines in one request; beyond: 431
    head_timeout_s: float = Field(10.0, gt=0, le=300)  # whole head, from connect or first byte
    keep_alive_timeout_s: float = Field(5.0, gt=0)  # idle between requests; then closed
    max_connections: int = Field(2048, ge=1)  # when full, the longest-idle waiter is closed
    max_connections_per_client: int = Field(512, ge=0)  # per client address; 0: no cap

    api_key: SecretStr | None = None  # when set, /predict requires it (X-API-Key or Bearer)

    @field_validator(
        "log_level", "device", "on_load_error", "loop_scheduling", "model_control", "precision",
        "layout", mode="before",
    )  # fmt: skip
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def loop_pool_capacity(self) -> int:
        return self.loop_pool_size or self.max_batch_size

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_means_none(cls, value: object) -> object:
        # DYNALAY_API_KEY= (empty) in a compose file must not mean "the empty string is the key".
        return None if value in ("", None) else value


def default_onnx_cache_dir() -> Path:
    """$XDG_CACHE_HOME/dynalay/onnx, else ~/.cache/dynalay/onnx (the image sets its own)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dynalay" / "onnx"
