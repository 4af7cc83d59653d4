"""The model's configuration: everything needed to rebuild a DynaLay network."""

from dataclasses import asdict, dataclass, fields
from typing import Any

from model.actions import ACTIONS, n_actions

STEMS = ("conv", "whiten", "whiten-deep", "staged")
# ModelConfig.agent_inputs → how many of the profile's confidence features (top probability,
# entropy) the agent reads alone; 0 = the whole profile.
AGENT_INPUTS = {"profile": 0, "confidence": 2, "top_probability": 1}


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "cnn"  # "cnn" (images) or "lstm" (token sequences)
    n_classes: int = 10  # for task "lm": the vocabulary size (a class per next token)
    # "classify": one label per input; "lm" (lstm only): next-token logits at every position,
    # (B, T, n_classes), while the agent still picks one action per sequence.
    task: str = "classify"

    # CNN: stem → three shape-preserving layers at (width, image_size/4, image_size/4) → head.
    in_channels: int = 3
    image_size: int = 32
    width: int = 96
    norm_groups: int = 8  # GroupNorm groups; BatchNorm would break under per-sample routing
    # "conv": two GroupNorm conv blocks (the default: a config.json without the key).
    # "whiten" (the embedded checkpoints/cifar10): a frozen 2×2 patch-whitening conv and
    # BatchNorm conv groups, as in the fast CIFAR training recipes; BatchNorm is safe there
    # because the stem runs once per image, never inside a loop; the loops sit at
    # (width, 7, 7). "whiten-deep": the recipes' full stem (two convs per group
    # and a third group down to 3 × 3 px, partial-identity conv init, BatchNorm with a fixed
    # scale), the loops at (width, 3, 3) in place of the recipes' last conv.
    # "staged" (model/staged.py): a thin prelude, then three loopable stages of their own shape
    # at stage_widths channels (15 × 15, 7 × 7, 3 × 3 px for 32 px), so the loops carry the
    # network's depth; `width` and `loop_convs` do not apply.
    stem: str = "conv"
    stage_widths: tuple[int, int, int] = (64, 128, 256)
    stem_width: int = 64  # "whiten*": channels of the first conv group (the others: `width`)
    # Convolutions per loopable layer: 2 (residual block; the default, for a config.json without
    # the key) or 1 (cheaper; the embedded checkpoints/cifar10).
    loop_convs: int = 2

    # LSTM: embedding → three LSTM layers of hidden_size → masked mean pool → head.
    vocab_size: int = 0
    embed_dim: int = 128
    hidden_size: int = 256
    # Dropout on the embeddings, training only. It sits outside the loops (the stem runs once
    # per forward), so every fixed-point map stays deterministic and can converge.
    embed_dropout: float = 0.0

    # Forward fixed-point solve (thesis §3.1: relative residual, tol 1e-2).
    solver: str = "fixed_point"  # key in model.solvers.SOLVERS
    tol: float = 1e-2
    max_iter: int = 20

    # Backward through a loop (thesis §3.3.4). key in model.backward.BACKWARDS
    backward: str = "implicit"
    b_tol: float = 1e-5  # adjoint fixed point tolerance (thesis)
    b_max_iter: int = 30
    phantom_steps: int = 2  # differentiated steps for backward="phantom"

    # Agent: MLP over the straight pass' activation profile.
    agent_hidden: int = 64
    # The agent reads the straight pass' confidence (top probability, entropy) as it is rather
    # than normalised with the layer summaries (model/agent.py); False for older checkpoints.
    agent_raw_confidence: bool = False
    # What the agent reads: "profile" (layer summaries and confidence), "confidence" (the
    # straight pass' top probability and entropy alone, unnormalised) or "top_probability".
    agent_inputs: str = "profile"
    # A fifth action, `tta` (model/actions.py): the straight pass over four views of the image,
    # logits averaged, at four passes' cost. Images only; False for a config.json without it.
    tta_action: bool = False
    # The actions the agent may choose, by name (model/actions.py); () lets it choose every
    # action the model offers. The others stay available as forced actions. "straight" must
    # be among them: the agent can always decline to spend more.
    agent_choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "agent_choices", tuple(self.agent_choices))  # JSON gives a list
        object.__setattr__(self, "stage_widths", tuple(self.stage_widths))
        if self.arch not in ("cnn", "lstm"):
            raise ValueError(f"arch must be 'cnn' or 'lstm', got {self.arch!r}")
        if self.arch == "cnn" and self.width % self.groups_for(self.width):
            raise ValueError(f"width {self.width} must be divisible by norm_groups")
        if len(self.stage_widths) != 3 or min(self.stage_widths) < 1:
            raise ValueError(f"stage_widths must be three positive widths, got {self.stage_widths}")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        if self.loop_convs not in (1, 2):
            raise ValueError(f"loop_convs must be 1 or 2, got {self.loop_convs}")
        if self.arch == "lstm" and self.vocab_size <= 0:
            raise ValueError("an lstm config needs vocab_size > 0")
        if self.task not in ("classify", "lm"):
            raise ValueError(f"task must be 'classify' or 'lm', got {self.task!r}")
        if self.task == "lm" and self.arch != "lstm":
            raise ValueError("task 'lm' needs arch 'lstm'")
        if not 0.0 <= self.embed_dropout < 1.0:
            raise ValueError(f"embed_dropout must be in [0, 1), got {self.embed_dropout}")
        if self.tta_action and self.arch != "cnn":
            raise ValueError("tta_action (test-time image views) needs arch 'cnn'")
        if self.n_classes < 2:
            raise ValueError("n_classes must be ≥ 2")
        if self.agent_inputs not in AGENT_INPUTS:
            raise ValueError(
                f"agent_inputs must be one of {tuple(AGENT_INPUTS)}, got {self.agent_inputs!r}"
            )
        self._check_agent_choices()

    def _check_agent_choices(self) -> None:
        if not self.agent_choices:
            return
        offered = ACTIONS[: n_actions(self.tta_action)]
        unknown = [name for name in self.agent_choices if name not in offered]
        if unknown:
            raise ValueError(f"agent_choices {unknown} are not among this model's {offered}")
        if "straight" not in self.agent_choices:
            raise ValueError("agent_choices must include 'straight'")

    def groups_for(self, channels: int) -> int:
        return min(self.norm_groups, channels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """The inverse of `to_dict`; refuses keys this build does not know.

        >>> ModelConfig.from_dict(ModelConfig(width=32).to_dict()) == ModelConfig(width=32)
        True
        >>> ModelConfig.from_dict({"widht": 32})
        Traceback (most recent call last):
        ...
        ValueError: unknown model config keys: ['widht']
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {unknown}")
        return cls(**data)
