"""The loads of the serving benchmark: which actions each one's requests force."""

from __future__ import annotations

from model.actions import ACTIONS

# load name → the actions its requests force, alternating (None: the agent decides)
LOADS: dict[str, tuple[str | None, ...]] = {
    "adaptive": (None,),
    "mixed": ("straight", "loop_all"),
    "straight": ("straight",),
    "loop_all": ("loop_all",),
}


def action_id(action: str | None) -> int | None:
    """The engine's action index of a forced action (None: the agent decides)."""
    return None if action is None else ACTIONS.index(action)
