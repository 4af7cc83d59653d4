"""`python -m service.ray` (`make serve-ray`): the service as Ray Serve replicas on a local
single-node Ray cluster, listening on loopback.

Starts the cluster, deploys `DYNALAY_RAY_REPLICAS` replicas and returns to waiting once every
replica is warm. SIGTERM or Ctrl-C: Serve drains and stops the replicas (each finishes its
requests), then the cluster stops, every Ray process with it, and the port is free. A second
Ctrl-C stops at once. Exit status: 0 after a clean stop, 3 when the start failed (models that
do not load, a cluster or proxy that does not come up), as `python -m service`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from service.core import Settings
from service.ray.cluster import local_cluster_environment
from service.ray.settings import RaySettings

log = logging.getLogger("service.ray")

START_FAILED_EXIT = 3  # as `python -m service` when models fail to load


class StopSignals:
    """First SIGTERM/SIGINT: stop gracefully; a second one interrupts the graceful stop."""

    def __init__(self) -> None:
        self.requested = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, sig: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt
        log.info("%s: stopping the deployment and the cluster", signal.Signals(sig).name)
        self.requested.set()


def main() -> int:
    settings, ray_settings = Settings(), RaySettings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    local_cluster_environment()
    from ray import serve

    from service.ray.cluster import start_local_cluster

    stop = StopSignals()
    started = time.monotonic()
    try:
        try:
            start_local_cluster(ray_settings)
            stop.install()  # after ray.init, which installs handlers of its own
            deployment = BackgroundStart(lambda: _deploy(settings, ray_settings))
            if not deployment.wait_unless(stop.requested):
                log.info("stopped while starting")  # nothing served yet: nothing to drain
                return 0
            deployment.result()
        except Exception as exc:  # a cluster, proxy or replicas that cannot start
            log.error("start failed: %s: %s", type(exc).__name__, exc)
            return START_FAILED_EXIT
        log.info(
            "ready after %.1f s: http://%s:%d (%s), metrics http://127.0.0.1:%d/metrics",
            time.monotonic() - started,
            settings.host,
            settings.port,
            _replicas(ray_settings),
            ray_settings.metrics_port,
        )
        while not stop.requested.wait(timeout=1.0):
            pass
        serve.shutdown()
        return 0
    except KeyboardInterrupt:
        log.warning("second signal: stopping at once")
        return 0
    finally:
        import ray

        ray.shutdown()  # every process of the cluster this launcher started
        log.info("the cluster has stopped")


class BackgroundStart:
    """Runs the (blocking) deployment in a thread, so a signal during the start is heard: Serve
    waits for every replica to be warm, which on a loaded machine can take minutes."""

    def __init__(self, deploy: Callable[[], None]) -> None:
        self._done = threading.Event()
        self._error: BaseException | None = None

        def run() -> None:
            try:
                deploy()
            except BaseException as exc:  # handed to the main thread by result()
                self._error = exc
            finally:
                self._done.set()

        threading.Thread(target=run, name="deploy", daemon=True).start()

    def wait_unless(self, stop: threading.Event) -> bool:
        """True once deployed (or failed); False if `stop` came first."""
        while not self._done.wait(timeout=0.5):
            if stop.is_set():
                return False
        return True

    def result(self) -> None:
        if self._error is not None:
            raise self._error


def _deploy(settings: Settings, ray_settings: RaySettings) -> None:
    from ray import serve

    from service.ray.application import APP_NAME, build_application
    from service.ray.cluster import start_serve

    start_serve(settings)
    serve.run(build_application(settings, ray_settings), name=APP_NAME, route_prefix="/")


def _replicas(ray_settings: RaySettings) -> str:
    if ray_settings.autoscaling:
        low, high = ray_settings.min_replicas, ray_settings.max_replicas
        return f"{ray_settings.replicas} replicas, autoscaling {low}-{high}"
    return f"{ray_settings.replicas} replicas"


if __name__ == "__main__":
    sys.exit(main())
