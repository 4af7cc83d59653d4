"""What the running service holds: its settings, metrics and the models it serves."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from model.actions import ACTIONS
from service.core import Metrics, ServiceError, Settings
from service.engines import Engine, ModelMeta, ProcessEngine
from service.inputs import (
    EncodedText,
    ImageSpec,
    PredictInput,
    TextEncoder,
    decode_base64_image,
    decode_image,
)
from service.scheduling import Scheduler


class RepositoryControl(Protocol):
    """What the repository routes ask of model control (model_control.py implements
    it; named here so the state need not import the module that loads into it)."""

    def index(self, ready_only: bool = False) -> list[dict]: ...

    async def load(self, name: str) -> None: ...

    async def unload(self, name: str) -> None: ...


@dataclass
class ServedModel:
    """One loaded model: its engine, its scheduler, its metrics and its input pipeline."""

    engine: Engine
    scheduler: Scheduler
    metrics: Metrics
    image_spec: ImageSpec | None = None
    text_encoder: TextEncoder | None = None

    @property
    def meta(self) -> ModelMeta:
        return self.engine.meta

    async def stop(self, grace_s: float = 0.0) -> None:
        """Drain the scheduler (service/scheduling/), then release the engine's process if it
        has one."""
        await self.scheduler.stop(grace_s)
        if isinstance(self.engine, ProcessEngine):
            self.engine.close()

    @property
    def name(self) -> str:
        return self.engine.meta.name

    def action_id(self, action: object) -> int | None:
        """A forced action's id for this model (None: the agent decides), whichever protocol
        named it; 422 for a name that is no action, or one the model does not offer (`tta`
        needs an image model trained with it)."""
        if action is None:
            return None
        if not isinstance(action, str) or action not in ACTIONS:
            raise ServiceError(
                422, f"unknown action {str(action)[:32]!r}; accepted: {', '.join(ACTIONS)}"
            )
        offered = self.meta.actions
        if action not in offered:
            raise ServiceError(
                422,
                f"model {self.name!r} does not offer action {action[:32]!r}; "
                f"its actions: {', '.join(offered)}",
            )
        return offered.index(action)

    def preprocess(self, payload: PredictInput, settings: Settings) -> np.ndarray | EncodedText:
        """Blocking (decode, resize, tokenize): run it in a worker thread."""
        if self.text_encoder is not None:
            assert payload.text is not None
            return self.text_encoder.encode(payload.text)
        assert self.image_spec is not None and payload.image is not None
        data = payload.image
        raw = decode_base64_image(data) if isinstance(data, str) else data
        return decode_image(raw, self.image_spec, settings.max_image_pixels)


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    models: dict[str, ServedModel] = field(default_factory=dict)
    ready: bool = False
    load_error: str | None = None  # set when nothing will be served (DYNALAY_ON_LOAD_ERROR=fail)
    failed: dict[str, str] = field(default_factory=dict)  # skipped model directory -> why
    draining: bool = False  # SIGTERM received: refuse new work, finish what was accepted
    started: float = field(default_factory=time.monotonic)
    control: RepositoryControl | None = None  # the repository extension (set by the lifespan)

    def reset(self) -> None:
        """Forget a previous run: an app's lifespan may start again after a shutdown."""
        self.models.clear()
        self.failed.clear()
        self.ready = self.draining = False
        self.load_error = None

    def begin_drain(self) -> None:
        """Turn not-ready and refuse new predictions; accepted ones still finish.

        Called from a signal handler: it only flips flags, which is safe there.
        """
        self.draining = True
        self.ready = False

    def not_ready_reason(self) -> str:
        if self.draining:
            return "the service is shutting down"
        return self.load_error or "models are loading"

    def resolve(self, name: str | None, modality: str) -> ServedModel:
        """The model a request asked for, or the only one of its modality."""
        if name is not None:
            served = self.models.get(name)
            if served is None and name in self.failed:
                raise ServiceError(503, f"model {name[:64]!r} is not ready: {self.failed[name]}")
            if served is None:
                raise ServiceError(404, f"unknown model {name[:64]!r}; loaded: {self._names()}")
            if served.meta.modality != modality:
                raise ServiceError(
                    400, f"model {name!r} takes {served.meta.modality} input, not {modality}"
                )
            return served
        fitting = [m for m in self.models.values() if m.meta.modality == modality]
        if not fitting:
            raise ServiceError(404, f"no {modality} model is loaded; loaded: {self._names()}")
        if len(fitting) > 1:
            names = ", ".join(m.name for m in fitting)
            raise ServiceError(422, f"several {modality} models are loaded ({names}); set `model`")
        return fitting[0]

    def _names(self) -> str:
        return ", ".join(f"{n} ({m.meta.modality})" for n, m in self.models.items()) or "none"
