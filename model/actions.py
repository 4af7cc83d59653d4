"""The agent's actions (thesis §3.3, plus test-time views) and what each one costs.

Action ids index `ACTIONS`. Action k ≤ 3 loops the first k loopable layers as one composite map:
0 runs L1→L2→L3 once, 1 iterates L1, 2 iterates L2∘L1, 3 iterates L3∘L2∘L1. Action 4, `tta`,
loops nothing: it runs the straight pass again on three more views of the image (its mirror
image, and both moved one pixel diagonally) and averages the four views' logits. Only an image
model whose config has `tta_action` offers it; a model's actions are always the first
`n_actions(config)` of `ACTIONS`.
"""

from collections.abc import Iterable

ACTIONS: tuple[str, ...] = ("straight", "loop_l1", "loop_l1_l2", "loop_all", "tta")
LAYER_NAMES: tuple[str, ...] = ("layer1", "layer2", "layer3")
N_ACTIONS = len(ACTIONS)
N_LAYERS = len(LAYER_NAMES)
N_LOOP_ACTIONS = 4  # straight and the three loops: every model has these
THESIS_ACTIONS = ACTIONS[:N_LOOP_ACTIONS]
TTA = 4  # the action id of the test-time views
TTA_VIEWS = 4  # the image, its mirror, and each of them moved one pixel


def n_actions(tta_action: bool) -> int:
    """How many actions a model offers (the agent's output width).

    >>> n_actions(False), n_actions(True)
    (4, 5)
    """
    return N_ACTIONS if tta_action else N_LOOP_ACTIONS


def looped_layers(action: int) -> tuple[str, ...]:
    """Names of the layers a given action iterates to a fixed point (none for `tta`).

    >>> looped_layers(2), looped_layers(TTA)
    (('layer1', 'layer2'), ())
    """
    if not 0 <= action < N_ACTIONS:
        raise ValueError(f"action must be in 0..{N_ACTIONS - 1}, got {action}")
    return () if action == TTA else LAYER_NAMES[:action]


def cost_layers(action: int) -> int:
    """k in the reward's cost term: the layers an action runs again after the straight pass —
    the k looped layers of a loop, all three for `tta` (it reruns the whole pass per view).

    >>> [cost_layers(a) for a in range(N_ACTIONS)]
    [0, 1, 2, 3, 3]
    """
    return N_LAYERS if action == TTA else action


def layer_evaluations(action: int, iterations: int) -> int:
    """Single-layer evaluations that one sample costs.

    The straight pass (3 evaluations) always runs: the agent reads it. A looped action then
    iterates its k-layer composite `iterations` times (k evaluations each) and runs the
    remaining 3 − k layers once more on the fixed point. `tta` runs the whole pass on each of
    its views (the stem too: the cost of every view is one straight pass's).

    >>> layer_evaluations(0, 0), layer_evaluations(3, 4), layer_evaluations(TTA, 0)
    (3, 15, 12)
    """
    if action == 0:
        return N_LAYERS
    if action == TTA:
        return N_LAYERS * TTA_VIEWS
    return N_LAYERS + action * iterations + (N_LAYERS - action)


def actions_in(names: Iterable[str]) -> tuple[str, ...]:
    """The `ACTIONS` among `names` in action order (a metrics file sorts its keys).

    >>> actions_in({"tta": 0.1, "loop_all": 0.0, "straight": 0.9})
    ('straight', 'loop_all', 'tta')
    """
    given = set(names)
    return tuple(name for name in ACTIONS if name in given)
