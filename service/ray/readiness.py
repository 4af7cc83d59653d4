"""/readyz (and OIP's /v2/health/ready) on Ray Serve: 200 only once enough replicas are warm.

Any replica may answer a readiness probe, and a replica only gets requests once it is warm (see
`lifespan.py`), so its own answer alone would say "ready" while its siblings still load. This
middleware first asks Serve how many replicas of this deployment are running and answers 503
(the service's own not-ready body, its reason saying how many are warm) while fewer than
`required` are; otherwise the replica's own route answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.repository import ServiceState

READINESS_PATHS = ("/readyz", "/v2/health/ready")
STATUS_CACHE_S = 1.0  # health checks poll often; the controller is asked at most once a second


class ReplicaCount:
    """Running replicas of one Serve deployment, cached for STATUS_CACHE_S."""

    def __init__(self, app_name: str, deployment: str, clock: Callable[[], float] = time.monotonic):
        self.app_name = app_name
        self.deployment = deployment
        self.clock = clock
        self._value = 0
        self._at = float("-inf")

    async def running(self) -> int:
        if self.clock() - self._at >= STATUS_CACHE_S:
            self._value = await asyncio.to_thread(self._ask_serve)  # a blocking controller call
            self._at = self.clock()
        return self._value

    def _ask_serve(self) -> int:
        from ray import serve

        application = serve.status().applications.get(self.app_name)
        if application is None or self.deployment not in application.deployments:
            return 0
        return application.deployments[self.deployment].replica_states.get("RUNNING", 0)


class WarmReplicasReadiness:
    def __init__(
        self, app: ASGIApp, state: ServiceState, replicas: ReplicaCount, required: int
    ) -> None:
        self.app = app
        self.state = state
        self.replicas = replicas
        self.required = required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in READINESS_PATHS:
            running = await self.replicas.running()
            if running < self.required:
                await self._not_ready(scope["path"], running)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _not_ready(self, path: str, running: int) -> JSONResponse:
        if path != "/readyz":  # OIP's server-ready body is {"ready": bool} only
            return JSONResponse({"ready": False}, status_code=503)
        body: dict = {"ready": False, "models": list(self.state.models)}
        if self.state.failed:
            body["failed"] = self.state.failed
        body["error"] = f"{running} of {self.required} replicas are warm"
        headers = {"Retry-After": str(self.state.settings.retry_after_s)}
        return JSONResponse(body, status_code=503, headers=headers)
