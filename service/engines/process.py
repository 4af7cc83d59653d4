"""An engine in a process of its own, so HTTP and compute run in parallel.

In one process the event loop (HTTP parsing, multipart, JSON answers) and the engine thread
take turns on one interpreter lock: on 2 cores the service used about one core while its
clients waited. Here the engine, its parity gate, warm-up and stepper live in a child process
(spawned, so no lock or thread state is inherited); the service keeps its schedulers, queue,
limits, deadlines, drain and metrics, and each stepper call becomes one message each way over
a pipe: inputs in (numpy arrays), outcomes out (plain Python values, as in-process).

The child ignores SIGINT and SIGTERM (the service drains, then closes it) and exits when its
pipe closes, so it never outlives the service, even one that was killed.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from service.engines.base import BatchOutput, Engine, EngineFactory, EngineInput, ModelMeta
from service.engines.stepping import StepOutcome, Stepper, StraightOutcome

CLOSE = "close"  # the message that ends the child

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Identity:
    """What the service reads of an engine, sent back by the child once it has loaded."""

    name: str
    device: str
    precision: str
    layout: str
    meta: ModelMeta


class EngineProcessError(RuntimeError):
    """The engine process died or its pipe broke (the call's requests get a 500)."""


def in_own_process(factory: EngineFactory) -> EngineFactory:
    """`factory` (picklable: a registry entry) run in a child process per model."""
    return partial(ProcessEngine, factory)


class ProcessEngine:
    """The `Engine` face of a child process; `stepper(capacity)` is its only way to compute.

    A child that dies (killed, out of memory) fails the call in flight (EngineProcessError: a
    500 for its requests); the next call starts a new child, loaded and warmed up again, so
    the model comes back without a restart of the service.
    """

    def __init__(self, factory: EngineFactory, directory: Path, device: str) -> None:
        self._spawn_args = (factory, directory, device)
        self._lock = threading.Lock()  # one call in flight: a stepper is not thread-safe
        self._warm = False
        self._capacity: int | None = None  # the child's stepper, recreated by a new child
        self.generation = 0  # children started so far
        self._start()
        identity = self._call("identity")
        self.name, self.device = identity.name, identity.device
        self.precision, self.layout, self.meta = identity.precision, identity.layout, identity.meta

    def warmup(self) -> None:
        self._call("warmup")
        self._warm = True

    def spec(self) -> None:  # the parts live in the child
        raise TypeError("an engine in its own process has no local spec; use stepper()")

    def stepper(self, capacity: int) -> RemoteStepper:
        self._call("stepper", capacity)
        self._capacity = capacity
        return RemoteStepper(self)

    def close(self) -> None:
        self._closer()

    def call(self, method: str, *args: Any) -> Any:
        """`method(*args)` in the child (a new child first, if the last one died)."""
        with self._lock:
            if not self._process.is_alive():
                self._restart()
            return self._call_locked(method, args)

    def _call(self, method: str, *args: Any) -> Any:
        with self._lock:
            return self._call_locked(method, args)

    def _call_locked(self, method: str, args: tuple) -> Any:
        try:
            self._conn.send((method, args))
            ok, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            code = self._process.exitcode
            raise EngineProcessError(f"the engine process is gone (exit code {code})") from exc
        if not ok:
            raise value
        return value

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=_child, args=(child_end, *self._spawn_args), daemon=True, name="engine"
        )
        self._process.start()
        child_end.close()
        self._closer = weakref.finalize(self, _close, self._conn, self._process)
        self.generation += 1

    def _restart(self) -> None:
        log.error("the engine process of %s died (exit code %s): starting a new one",
                  self._spawn_args[1], self._process.exitcode)  # fmt: skip
        self._closer()
        self._start()
        self._call_locked("identity", ())
        if self._warm:
            self._call_locked("warmup", ())
        if self._capacity is not None:
            self._call_locked("stepper", (self._capacity,))


class RemoteStepper:
    """Stepper's calls (service/engines/stepping.py), answered by the child's stepper."""

    def __init__(self, engine: ProcessEngine) -> None:
        self._engine = engine
        self._generation = engine.generation
        self.busy = False  # the child's stepper.busy after the last call

    def straight(self, batch: Sequence[EngineInput], keys: Sequence[int]) -> StraightOutcome:
        outcome, self.busy = self._call("straight", list(batch), list(keys))
        return outcome

    def step(self, evict: Sequence[int] = ()) -> StepOutcome:
        outcome, self.busy = self._call("step", list(evict))
        return outcome

    def run(self, batch: Sequence[EngineInput]) -> BatchOutput:
        output, self.busy = self._call("run", list(batch))
        return output

    def clear(self) -> None:
        self._call("clear")
        self.busy = False

    def _call(self, method: str, *args: Any) -> Any:
        value = self._engine.call(method, *args)
        if self._engine.generation != self._generation:
            # A new child answered: the samples looping in the old one are lost, and their
            # requests must fail (the scheduler's loop-step failure), not wait for ever.
            self._generation, lost = self._engine.generation, self.busy
            if lost and method != "clear":
                self.busy = False
                raise EngineProcessError("the engine process was restarted; its loops are lost")
        return value


def _close(conn: Connection, process: multiprocessing.process.BaseProcess) -> None:
    with contextlib.suppress(OSError, ValueError):
        conn.send((CLOSE, ()))
    conn.close()
    process.join(timeout=10)
    if process.is_alive():
        process.kill()
        process.join()


# ---- the child --------------------------------------------------------------------------------


def _child(conn: Connection, factory: EngineFactory, directory: Path, device: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        engine = factory(directory, device)
    except Exception as exc:  # a refused checkpoint or precision: the service reports it
        _send(conn, False, exc)
        return
    served = _Served(engine)
    while True:
        try:
            method, args = conn.recv()
        except (EOFError, OSError):
            return  # the service is gone
        if method == CLOSE:
            return
        try:
            if method not in _Served.MESSAGES:
                raise EngineProcessError(f"no such engine message {method!r}")
            value = getattr(served, method)(*args)
        except Exception as exc:
            _send(conn, False, exc)
        else:
            _send(conn, True, value)


class _Served:
    """The child's side of each message (one method per name in MESSAGES)."""

    MESSAGES = frozenset({"identity", "warmup", "stepper", "straight", "step", "run", "clear"})

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._stepper: Stepper | None = None

    def identity(self) -> _Identity:
        e = self.engine
        return _Identity(e.name, e.device, e.precision, e.layout, e.meta)

    def warmup(self) -> None:
        self.engine.warmup()

    def stepper(self, capacity: int) -> None:
        self._stepper = Stepper(self.engine.spec(), capacity)

    def straight(self, batch: list[EngineInput], keys: list[int]) -> tuple[StraightOutcome, bool]:
        return self._stepper.straight(batch, keys), self._stepper.busy

    def step(self, evict: list[int]) -> tuple[StepOutcome, bool]:
        return self._stepper.step(evict), self._stepper.busy

    def run(self, batch: list[EngineInput]) -> tuple[BatchOutput, bool]:
        return self._stepper.run(batch), self._stepper.busy

    def clear(self) -> None:
        self._stepper.clear()


def _send(conn: Connection, ok: bool, value: Any) -> None:
    try:
        conn.send((ok, value))
    except Exception:  # e.g. an exception that does not pickle: send its words
        if ok:
            raise
        conn.send((False, EngineProcessError(f"{type(value).__name__}: {value}"[:2000])))


def open_stepper(engine: Engine, capacity: int) -> Stepper | RemoteStepper:
    """The stepper a scheduler runs `engine` through: local, or the engine process's."""
    if isinstance(engine, ProcessEngine):
        return engine.stepper(capacity)
    return Stepper(engine.spec(), capacity)
