"""uvicorn, with a drain on SIGTERM and an exit status that tells what happened.

Plain uvicorn closes its listening socket the moment SIGTERM arrives and re-raises the signal
after shutting down, so the process ends "killed by SIGTERM" even when nothing was lost. Here:

1. SIGTERM/SIGINT: the service turns not-ready at once (/readyz 503) and refuses new predictions
   with 503 + Retry-After, while still answering on its socket for `drain_delay_s`, so load
   balancers and health checks see it leave;
2. then uvicorn's own shutdown: the listener closes, in-flight requests (and so everything in
   the schedulers' queues, each of which is an in-flight request) get `shutdown_grace_s` to
   finish, the lifespan drains the schedulers;
3. the process exits 0. A second SIGINT forces the exit, as in plain uvicorn.

When model loading failed for good (DYNALAY_ON_LOAD_ERROR), the server stops and exits 3,
uvicorn's start-up failure status, so an orchestrator sees a failed start, not a live process.

Every connection passes through the connection guard (service/connection_guard) before
uvicorn's HTTP/1.1 parser sees a byte: bounded request heads, head and idle deadlines, and
connection slots overall and per client address, so a few abusive clients cannot exhaust the
process's memory, CPU or file descriptors.
"""

from __future__ import annotations

import gc
import logging
import math
import signal
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from service.connection_guard import ConnectionLimits, fit_file_limit, uvicorn_options
from service.core import Settings
from service.repository import ServiceState

log = logging.getLogger(__name__)

LOAD_FAILED_EXIT = 3  # uvicorn's STARTUP_FAILURE


def build_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration: one worker, the guard in front of its h11 parser."""
    limits = fit_file_limit(ConnectionLimits.from_settings(settings))
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        log_level=settings.log_level,
        # Accepted requests finish within this; it bounds uvicorn's wait for connections.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
        **uvicorn_options(limits),
    )


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServiceState, drain_delay_s: float) -> None:
        super().__init__(config)
        self.state = state
        self.drain_delay_s = drain_delay_s
        self.drain_started: float | None = None  # time.monotonic() of the first SIGTERM
        self.exit_code = 0
        self.heap_frozen = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs in a signal handler: only flag changes here, the main loop acts on them.
        if self.drain_started is None:
            self.drain_started = time.monotonic()
            self.state.begin_drain()
            return
        if sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.state.ready and not self.heap_frozen:
            self.heap_frozen = True
            freeze_long_lived_heap()
        if self.state.load_error is not None and self.exit_code == 0:
            log.error("stopping: %s", self.state.load_error)
            self.exit_code = LOAD_FAILED_EXIT
            return True
        if self.drain_started is not None and self._drain_delay_over():
            log.info("draining: closing the listener and finishing accepted requests")
            return True
        return await super().on_tick(counter)

    def _drain_delay_over(self) -> bool:
        assert self.drain_started is not None
        return time.monotonic() - self.drain_started >= self.drain_delay_s


def freeze_long_lived_heap() -> None:
    """Once the models are served, what is alive (torch, the app, the models' Python objects:
    a few hundred thousand objects) lives as long as the process: move it out of the garbage
    collector's reach. Otherwise every full collection walks all of it, and a flood of
    connections, each allocating a few dozen objects, triggers them: measured 1.6 s pauses of
    the event loop during 3,000 slowloris connections on a busy 2-core machine."""
    gc.collect()
    gc.freeze()
    log.info("%d long-lived objects frozen out of garbage collection", gc.get_freeze_count())
