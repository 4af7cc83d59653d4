"""The models the service holds and how they get there: the running state (`ServiceState`,
`ServedModel`), discovery of the model repository, loading at start-up, explicit model
control (load/unload), the FastAPI dependency that hands handlers the state, and error text
that may leave the process.
"""

from service.repository.deps import StateDep
from service.repository.discovery import discover, resolve_device
from service.repository.model_control import ModelControl
from service.repository.public_errors import MAX_LENGTH, public_message, scrub_paths
from service.repository.state import RepositoryControl, ServedModel, ServiceState

__all__ = [
    "MAX_LENGTH",
    "ModelControl",
    "RepositoryControl",
    "ServedModel",
    "ServiceState",
    "StateDep",
    "discover",
    "public_message",
    "resolve_device",
    "scrub_paths",
]
