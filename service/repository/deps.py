"""Typed FastAPI dependencies: handlers reach the service state only through these."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.repository.state import ServiceState


def get_state(request: Request) -> ServiceState:
    return request.app.state.dynalay


StateDep = Annotated[ServiceState, Depends(get_state)]
