"""The Serve application: the replica deployment with its options from `RaySettings`.

`build_application` is what `python -m service.ray` deploys; `app_builder` is the import path
for `serve deploy`/`serve run` and KubeRay (`service.ray.application:app_builder`), which read
the settings from the cluster's environment.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from service.core import Settings
from service.ray.replica import DynaLayReplica
from service.ray.settings import RaySettings

APP_NAME = "dynalay"
DEPLOYMENT_NAME = "dynalay"


def deployment_options(settings: Settings, ray_settings: RaySettings, cluster_gpus: float) -> dict:
    """Serve deployment options: replicas or autoscaling, per-replica resources and limits."""
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "max_ongoing_requests": ray_settings.max_ongoing_requests,
        "max_queued_requests": ray_settings.max_queued_requests,
        # Serve waits this long for a stopping replica; its own drain needs shutdown_grace_s.
        "graceful_shutdown_timeout_s": max(
            ray_settings.graceful_shutdown_s, settings.shutdown_grace_s + 1
        ),
        "ray_actor_options": actor_options(settings, ray_settings, cluster_gpus),
    }
    if ray_settings.autoscaling:
        options["autoscaling_config"] = {
            "min_replicas": ray_settings.min_replicas,
            "initial_replicas": ray_settings.replicas,
            "max_replicas": ray_settings.max_replicas,
            "target_ongoing_requests": ray_settings.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = ray_settings.replicas
    return options


def actor_options(settings: Settings, ray_settings: RaySettings, cluster_gpus: float) -> dict:
    """CPUs per replica, and a GPU share when the replicas will run on CUDA.

    `cuda` always asks for the share (an autoscaling cluster adds a GPU node for it); `auto`
    asks when the cluster has GPUs now; `cpu` never does.
    """
    options: dict[str, Any] = {"num_cpus": ray_settings.num_cpus}
    wants_gpu = settings.device == "cuda" or (settings.device == "auto" and cluster_gpus > 0)
    if wants_gpu and ray_settings.gpu_fraction > 0:
        options["num_gpus"] = ray_settings.gpu_fraction
    return options


def build_application(
    settings: Settings, ray_settings: RaySettings, cluster_gpus: float | None = None
) -> Application:
    if cluster_gpus is None:
        import ray

        cluster_gpus = ray.cluster_resources().get("GPU", 0.0)
    options = deployment_options(settings, ray_settings, cluster_gpus)
    return DynaLayReplica.options(**options).bind(settings, ray_settings)


def app_builder(args: dict[str, Any]) -> Application:
    """`serve deploy` entry point: `DYNALAY_*` from the environment, `args` override them."""
    return build_application(Settings(**args), RaySettings())
