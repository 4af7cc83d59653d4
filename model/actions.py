"""The agent's four actions (thesis §3.3) and what each one loops.

Action ids index `ACTIONS`. Action k loops the first k loopable layers as one composite map:
0 runs L1→L2→L3 once, 1 iterates L1, 2 iterates L2∘L1, 3 iterates L3∘L2∘L1.
"""

ACTIONS: tuple[str, ...] = ("straight", "loop_l1", "loop_l1_l2", "loop_all")
LAYER_NAMES: tuple[str, ...] = ("layer1", "layer2", "layer3")
N_ACTIONS = len(ACTIONS)
N_LAYERS = len(LAYER_NAMES)


def looped_layers(action: int) -> tuple[str, ...]:
    """Names of the layers a given action iterates to a fixed point.

    >>> looped_layers(2)
    ('layer1', 'layer2')
    """
    if not 0 <= action < N_ACTIONS:
        raise ValueError(f"action must be in 0..{N_ACTIONS - 1}, got {action}")
    return LAYER_NAMES[:action]


def layer_evaluations(action: int, iterations: int) -> int:
    """Single-layer evaluations that one sample costs.

    The straight pass (3 evaluations) always runs: the agent reads it. A looped action then
    iterates its k-layer composite `iterations` times (k evaluations each) and runs the
    remaining 3 − k layers once more on the fixed point.

    >>> layer_evaluations(0, 0), layer_evaluations(3, 4)  # straight; loop_all, 4 iterations
    (3, 15)
    """
    if action == 0:
        return N_LAYERS
    return N_LAYERS + action * iterations + (N_LAYERS - action)
