"""How the service runs on Ray Serve: one typed object read from `DYNALAY_RAY_*` variables.

The service's own settings (`service.core.settings.Settings`, `DYNALAY_*`) still configure each
replica; these say how many replicas there are, what each may use, and where the local cluster
exports its metrics. Built once by the caller and passed in, like `Settings`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RaySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DYNALAY_RAY_", env_ignore_empty=True, extra="ignore", frozen=True
    )

    replicas: int = Field(2, ge=1)  # fixed replica count; the starting count when autoscaling
    # Autoscaling on ongoing requests: Serve keeps about `target_ongoing_requests` requests in
    # each replica by adding or removing replicas between min_replicas and max_replicas.
    autoscaling: bool = False
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    target_ongoing_requests: float = Field(16.0, gt=0)
    # Requests one replica holds at once (its batcher forms batches from these); the rest wait
    # in Serve's queue, at most max_queued_requests per caller, beyond that 503 + Retry-After.
    max_ongoing_requests: int = Field(64, ge=1)
    max_queued_requests: int = Field(256, ge=-1)  # -1: no limit
    num_cpus: float = Field(1.0, ge=0)  # CPUs Ray reserves per replica (its torch threads)
    gpu_fraction: float = Field(0.5, ge=0, le=1)  # GPU share per replica when the cluster has one
    graceful_shutdown_s: float = Field(20.0, gt=0)  # a stopping replica finishes its requests

    # The local cluster of `python -m service.ray` (an existing cluster has its own).
    num_cluster_cpus: int | None = Field(None, ge=1)  # default: every core of this machine
    metrics_port: int = Field(8080, ge=1, le=65535)  # Ray's Prometheus endpoint, 127.0.0.1 only
    metrics_report_interval_ms: int = Field(5000, ge=100)  # replica → metrics endpoint
    temp_dir: Path | None = None  # Ray's session files (default /tmp/ray)

    @model_validator(mode="after")
    def _replica_bounds(self) -> RaySettings:
        if self.autoscaling and not (
            self.min_replicas <= self.replicas <= self.max_replicas
            and self.min_replicas <= self.max_replicas
        ):
            raise ValueError(
                "autoscaling needs min_replicas <= replicas <= max_replicas; got "
                f"{self.min_replicas} <= {self.replicas} <= {self.max_replicas}"
            )
        return self

    @property
    def warm_replicas_required(self) -> int:
        """Replicas that must be warm before /readyz says 200: all of a fixed deployment,
        the floor of an autoscaled one (at least one), so scaling up never flaps readiness."""
        return max(1, self.min_replicas) if self.autoscaling else self.replicas
