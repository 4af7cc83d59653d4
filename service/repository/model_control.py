"""Model control: the repository may change while the service runs (DYNALAY_MODEL_CONTROL).

- "none": model_dir is loaded once at start (loading.py); load/unload are refused.
- "poll": every DYNALAY_POLL_S the repository is rescanned: a new model directory is loaded,
  one whose files changed is reloaded, one that disappeared is unloaded.
- "explicit": nothing is loaded at start; POST /v2/repository/models/{m}/load (or gRPC
  RepositoryModelLoad) loads or reloads a model, .../unload unloads it.

A new version is loaded, verified (model/checkpoint.py checks every file against its
manifest) and warmed up beside the one serving; only then is it swapped into `state.models`,
in one assignment on the event loop. Requests that picked the old version before the swap
(queued, decoding, or looping in its pool) finish on it, new ones go to the new one. A
checkpoint that fails verification or warm-up is refused: the old version keeps serving and
the repository index says why. With poll and explicit the service is ready once the first scan
is done, whatever it found (Triton's rule): models come and go behind a ready server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from service.core import ServiceError
from service.engines import EngineFactory
from service.repository.discovery import RepositoryError, discover, load_engine, resolve_device
from service.repository.loading import EXPECTED_ERRORS, load_models, publish, start_serving
from service.repository.public_errors import public_message
from service.repository.state import ServedModel, ServiceState

log = logging.getLogger(__name__)

CONTROL_MODES = ("none", "poll", "explicit")
READY, UNAVAILABLE = "READY", "UNAVAILABLE"  # Triton's model states in the index
Fingerprint = tuple[tuple[str, int, int, int], ...]


@dataclass
class IndexEntry:
    """One model directory as the repository index reports it."""

    directory: Path
    state: str = UNAVAILABLE
    version: str = ""
    reason: str = ""
    tried: Fingerprint | None = None  # the files of the last load attempt (poll: retry on change)


class ModelControl:
    def __init__(self, state: ServiceState, factory: EngineFactory) -> None:
        self.state = state
        self.factory = factory
        self.mode = state.settings.model_control
        self.entries: dict[str, IndexEntry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: dict[asyncio.Task, ServedModel] = {}
        self._device = ""

    # ---- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """The lifespan's loading task: the first load, then (poll) the rescans."""
        if self.mode == "none":
            await load_models(self.state, self.factory)
            self._index_served()
            return
        try:
            self._device = resolve_device(self.state.settings.device)
        except RepositoryError as exc:
            self.state.load_error = f"model loading failed: {exc}"
            return
        await self.rescan(load_changed=self.mode == "poll")
        self.state.ready = not self.state.draining
        while self.mode == "poll":
            await asyncio.sleep(self.state.settings.poll_s)
            try:
                await self.rescan(load_changed=True)
            except Exception:  # a failed scan must not end the polling
                log.exception("repository rescan failed; the next one follows as planned")

    async def close(self) -> None:
        """Shutdown: the versions still retiring drain like the served ones."""
        retiring = list(self._retiring.items())
        for task, _ in retiring:
            task.cancel()
        grace_s = self.state.settings.shutdown_grace_s
        await asyncio.gather(*(old.stop(grace_s) for _, old in retiring))

    # ---- the repository extension ------------------------------------------------------------

    def index(self, ready_only: bool = False) -> list[dict]:
        rows = [
            {"name": name, "version": e.version, "state": e.state, "reason": e.reason}
            for name, e in sorted(self.entries.items())
        ]
        return [r for r in rows if r["state"] == READY] if ready_only else rows

    async def load(self, name: str) -> None:
        """Explicit load (or reload) of `name`; ServiceError 400 with the reason on refusal."""
        self._explicit_only("load")
        await self.rescan(load_changed=False)
        entry = self._entry(name)
        if not await self._load(name, entry.directory):
            raise ServiceError(400, f"failed to load {name!r}: {entry.reason}")

    async def unload(self, name: str) -> None:
        self._explicit_only("unload")
        entry = self._entry(name)
        async with self._lock(name):
            self._withdraw(name)
            entry.state, entry.version, entry.reason = UNAVAILABLE, "", "unloaded"

    async def rescan(self, load_changed: bool) -> None:
        """Index every model directory; with load_changed (poll) also load new and changed
        ones and unload those that are gone."""
        found = self._scan()
        for name in [n for n in self.entries if n not in found]:
            if load_changed or self.entries[name].state != READY:
                async with self._lock(name):
                    self._withdraw(name)
                    del self.entries[name]
        for name, directory in found.items():
            entry = self.entries.setdefault(name, IndexEntry(directory, reason="not loaded"))
            entry.directory = directory
            if load_changed and entry.tried != fingerprint(directory):
                await self._load(name, directory)

    # ---- loading and swapping ----------------------------------------------------------------

    async def _load(self, name: str, directory: Path) -> bool:
        async with self._lock(name):
            entry = self.entries[name]
            entry.tried = fingerprint(directory)
            try:
                # Always warmed: a version that cannot answer must not replace one that can.
                engine = await asyncio.to_thread(
                    load_engine, self.factory, directory, self._device, True
                )
                if engine.meta.name != name:
                    raise RepositoryError(f"its card names it {engine.meta.name!r}, not {name!r}")
                served = start_serving(self.state, engine)
            except Exception as exc:
                self._refuse(name, entry, exc)
                return False
            self._swap(name, served)
            entry.state, entry.version, entry.reason = READY, served.meta.version, ""
            return True

    def _swap(self, name: str, served: ServedModel) -> None:
        """The new version takes the model's next request; the old one retires."""
        old = self.state.models.get(name)
        if old is not None:
            self._unpublish(old)
        self.state.models[name] = served  # one assignment: no request sees no version
        self.state.failed.pop(name, None)
        publish(self.state, served)
        if old is not None:
            self._retire(old)
        log.info("serving %s %s from %s", name, served.meta.version, served.meta.directory)

    def _withdraw(self, name: str) -> None:
        old = self.state.models.pop(name, None)
        self.state.failed.pop(name, None)
        if old is not None:
            self._unpublish(old)
            self._retire(old)
            log.info("unloaded %s %s", name, old.meta.version)

    def _retire(self, old: ServedModel) -> None:
        task = asyncio.get_running_loop().create_task(self._drain_retired(old))
        self._retiring[task] = old
        task.add_done_callback(lambda done: self._retiring.pop(done, None))

    async def _drain_retired(self, old: ServedModel) -> None:
        # A request that picked `old` before the swap may not have reached its queue yet (it
        # is decoding its input). Every such request is answered or times out within its
        # deadline (DYNALAY_REQUEST_TIMEOUT_MS from arrival), so the old version takes
        # requests for that long, then finishes what it holds and stops.
        settings = self.state.settings
        await asyncio.sleep(settings.request_timeout_ms / 1000.0)
        await old.stop(settings.shutdown_grace_s)

    def _refuse(self, name: str, entry: IndexEntry, exc: Exception) -> None:
        why = public_message(exc, self.state.settings.model_dir)
        log.error(
            "model %r: the checkpoint in %s is refused: %s: %s",
            name,
            entry.directory,
            type(exc).__name__,
            exc,
            exc_info=not isinstance(exc, EXPECTED_ERRORS),
        )
        serving = self.state.models.get(name)
        if serving is None:
            entry.state, entry.version, entry.reason = UNAVAILABLE, "", why
            self.state.failed[name] = why
        else:
            entry.reason = f"version {serving.meta.version} keeps serving; refused: {why}"

    def _unpublish(self, served: ServedModel) -> None:
        engine = served.engine
        self.state.metrics.model_info.remove(
            served.name, served.meta.version, engine.name, engine.device, engine.precision
        )

    # ---- helpers -----------------------------------------------------------------------------

    def _scan(self) -> dict[str, Path]:
        """Model name → directory; the name is the checkpoint card's (else the folder's)."""
        try:
            directories = discover(self.state.settings.model_dir)
        except RepositoryError as exc:
            log.debug("repository scan: %s", exc)
            return {}
        found: dict[str, Path] = {}
        for directory in directories:
            found.setdefault(card_name(directory), directory)
        return found

    def _entry(self, name: str) -> IndexEntry:
        entry = self.entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self.entries)) or "none"
            raise ServiceError(404, f"no model {name[:64]!r} in the repository; found: {known}")
        return entry

    def _explicit_only(self, what: str) -> None:
        if self.state.draining:
            raise ServiceError(503, "the service is shutting down")
        if self.mode != "explicit":
            raise ServiceError(
                400,
                f"explicit model {what} is not allowed with DYNALAY_MODEL_CONTROL={self.mode}; "
                "set it to explicit",
            )

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _index_served(self) -> None:
        """Mode none: the index lists what the start-up load served and refused."""
        for name, served in self.state.models.items():
            self.entries[name] = IndexEntry(served.meta.directory, READY, served.meta.version)
        model_dir = self.state.settings.model_dir
        for name, why in self.state.failed.items():
            self.entries[name] = IndexEntry(model_dir / name, reason=why)


def fingerprint(directory: Path) -> Fingerprint:
    """Name, size, mtime and inode of every file: a rewrite or a swapped-in folder changes it
    (a tampered file too, though its manifest did not change)."""
    with contextlib.suppress(OSError):
        stats = [(p.name, p.stat()) for p in directory.iterdir() if p.is_file()]
        return tuple(sorted((n, s.st_size, s.st_mtime_ns, s.st_ino) for n, s in stats))
    return ()


def card_name(directory: Path) -> str:
    """The model name in the checkpoint's config.json, read without loading any weights."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        return str(json.loads((directory / "config.json").read_text())["name"])
    return directory.name


__all__ = ["CONTROL_MODES", "IndexEntry", "ModelControl", "card_name", "fingerprint"]
