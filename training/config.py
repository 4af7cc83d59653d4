"""Frozen, typed training configuration. Defaults are the thesis' (ch. 4); recipes in
training/recipes/.

A config is plain data: it round-trips through JSON (`to_dict` / `TrainConfig.from_dict`, unknown
keys rejected) and is stored in the checkpoint's `train` record and the resumable run state.
Keys renamed since (RENAMED_KEYS) are read under their new names, so older checkpoints, run
states and config files keep loading.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DataConfig:
    # cifar10 | cifar100 | imagefolder | synthetic | imdb | wikitext2 | textfile
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = False
    pad: int = 4  # random-crop translation in pixels (reflect padding)
    flip: bool = True
    # "random": each image flipped with p ½ every epoch; "alternate": a fixed random half is
    # flipped in even epochs and the other half in odd ones, so every image is seen both ways
    # every two epochs (the derandomised flip of the fast CIFAR recipes).
    flip_mode: str = "random"
    train_subset: int | None = None  # use only the first N training images
    # Hold this many training images out (training/data/holdout.py: fixed, seeded) and evaluate
    # on them instead of the test split, so that recipes, β and thresholds are chosen without
    # reading the test set; 0 evaluates on the test split (older recipes).
    validation: int = 0
    test_subset: int | None = None
    synthetic_size: int = 512  # images per split when dataset == "synthetic"
    synthetic_classes: int = 10
    # imagefolder / textfile without a val split: the share of each class held out of train
    # (seeded by `seed`) to evaluate on.
    val_fraction: float = 0.2
    # Text (training/data/text/): IMDB reviews keep their first max_length tokens (as the service
    # does); the WordPiece tokenizer learns tokenizer_vocab ids from the training split.
    max_length: int = 256
    tokenizer_vocab: int = 12000
    seq_len: int = 64  # WikiText-2: tokens per language-model sequence (the agent's unit)


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "adam"  # adam | sgd (SGD uses Nesterov momentum)
    lr: float = 1e-3  # backbone peak learning rate
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 64
    label_smoothing: float = 0.0
    schedule: str = "constant"  # constant | onecycle (linear up, linear down) | linear (down)
    ramp_frac: float = 0.0  # share of backbone updates spent ramping the lr up (onecycle)
    final_lr_frac: float = 0.0  # lr at the end as a share of the peak (onecycle/linear)
    grad_clip: float | None = None
    # Lookahead averaging of the backbone weights (training/trainer/lookahead.py); None: off.
    lookahead: dict[str, float] | None = None
    # lr multiple for the backbone's biases (training/trainer/optim.py); the fast recipes train
    # their BatchNorm shifts 64 × faster than the weights.
    bias_lr_scale: float = 1.0
    agent_lr: float = 1e-3  # agent uses Adam at a constant rate, as in the thesis


LOOP_TEACHERS = ("none", "flip")


@dataclass(frozen=True)
class PhaseConfig:
    backbone_epochs: int = 20  # phase 1 ("backbone"): backbone only, every action trained
    agent_epochs: int = 20  # phase 2: agent only, backbone frozen
    joint_epochs: int = 60  # phase 3: both (thesis: 100 epochs in all)
    # Backbone loss = straight_weight·CE(straight) + loop_weight·CE(looped action). Measured on
    # the fixed-point prototype: equal weights make the loops the straight pass' function again
    # (nothing for the agent to choose), so the straight pass is weighted lower to let the
    # looped modes become a genuinely stronger function (docs/recipes.md).
    straight_weight: float = 0.3
    loop_weight: float = 1.0
    loop_actions: str = "sample"  # sample: random looped action per sample | batch: one per batch
    # Make the loops a specialist, not a copy of the straight pass (phase 1 only):
    # loop_focus γ weights each sample's looped loss by (1 − p_straight(y))^γ (detached,
    # normalised to mean 1), so the loops learn most where one pass fails; loop_teacher
    # "flip" trains the looped output towards the straight pass averaged over the image and
    # its mirror (no gradient through that target), which extra compute can match but one
    # pass cannot; loop_teacher_weight mixes that target with the (smoothed) label.
    loop_focus: float = 0.0
    loop_teacher: str = "none"  # none | flip
    loop_teacher_weight: float = 0.5
    # Keep the stem (everything before the loopable layers) as it is: its weights and its
    # BatchNorm statistics. Only the layers and the head train, so a fit that teaches a
    # finished net's layers to loop costs no stem gradient (its forward builds no graph).
    freeze_stem: bool = False
    # Phase 1 as an anytime network: the objective (training/trainer/anytime.py OBJECTIVES) over
    # loop_all's exit after each iteration, in place of the straight / looped losses above;
    # "" (the default) trains those.
    anytime: str = ""

    def __post_init__(self) -> None:
        if self.loop_teacher not in LOOP_TEACHERS:
            raise ValueError(f"loop_teacher must be one of {LOOP_TEACHERS}")


POLICY_ESTIMATORS = ("self_critical", "all_actions")  # training.trainer.steps.ESTIMATORS


@dataclass(frozen=True)
class AgentConfig:
    alpha: float = 0.5  # reward for a correct prediction
    beta: float = 0.3  # cost weight: R = α·correct − β·cost·k
    gamma: float = 0.2  # weight of the reward (policy-gradient) term in the total loss
    entropy: float = 0.01  # entropy bonus against policy collapse
    prob_floor: float = 0.1  # sampling mixes ε of uniform into the policy: p ≥ ε/4 per action
    cost_normalizer: float | None = None  # cost that counts as 1 (None: the costliest action's)
    # The reward's cost (training/evaluation/reward.py): "layers" (the thesis' layer evaluations
    # times k) or "macs" (multiply-adds executed, model/macs.py).
    cost: str = "layers"
    # Policy-gradient estimator (training.trainer.steps.ESTIMATORS): "self_critical" samples one
    # action (REINFORCE, greedy baseline); "all_actions" measures all four, exact gradient of
    # E_p[R].
    estimator: str = "self_critical"
    # "all_actions" only: after each agent epoch the agent refits this many epochs over the
    # epoch's cached (profile, every action's reward). Running every action is the costly part
    # of an agent step and the agent is a small MLP, so more of its steps cost almost nothing,
    # while a decision the few uncertain inputs carry needs more than one step per batch.
    replay_epochs: int = 0

    def __post_init__(self) -> None:
        if self.cost not in ("layers", "macs"):
            raise ValueError(f"cost must be 'layers' or 'macs', got {self.cost!r}")
        if self.replay_epochs and self.estimator != "all_actions":
            raise ValueError("replay_epochs needs estimator 'all_actions' (every action's reward)")
        if self.estimator not in POLICY_ESTIMATORS:
            raise ValueError(
                f"unknown estimator {self.estimator!r}; expected one of {POLICY_ESTIMATORS}"
            )


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    phases: PhaseConfig = field(default_factory=PhaseConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides (e.g. width)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None  # torch.set_num_threads on CPU
    channels_last: bool = False
    # Numerics of the training steps: "fp32", or "bf16" (autocast: convolutions and matrix
    # products in bfloat16, losses and weights in fp32), about 2× faster on CPUs with AVX-512
    # BF16 or AMX. Evaluation always runs in fp32.
    precision: str = "fp32"
    max_batches: int | None = None  # cap on batches per epoch (timing, smoke runs)
    eval_batch_size: int = 500
    eval_every: int = 1  # evaluate on the test split every N epochs (and always at the end)
    eval_subset: int | None = None  # per-epoch evaluations use the first N test images only
    name: str = "cifar10"
    # Start from this checkpoint's weights (e.g. retrain the agent at another β on a trained
    # backbone). The architecture must match; resuming a run dir takes precedence.
    init_from: str | None = None
    version: str = "0.1.0"

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")

    @property
    def total_epochs(self) -> int:
        p = self.phases
        return p.backbone_epochs + p.agent_epochs + p.joint_epochs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return merge(cls(), d)


# Config keys renamed after checkpoints were written with them: section → {old: new}. Phase 1
# was `warmup_epochs` and the lr ramp `warmup_frac`, but "warmup" is the engines' run of every
# action before readiness (DYNALAY_WARMUP).
RENAMED_KEYS: dict[str, dict[str, str]] = {
    "phases": {"warmup_epochs": "backbone_epochs"},
    "optim": {"warmup_frac": "ramp_frac"},
    # was `replay_passes`, but a "pass" is the network's straight pass; these are epochs over
    # the cached rewards.
    "agent": {"replay_passes": "replay_epochs"},
}

SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "optim": OptimConfig,
    "phases": PhaseConfig,
    "agent": AgentConfig,
}


def merge(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """cfg with nested overrides applied ({"optim": {"lr": 0.1}, "seed": 1, "model": {...}}).

    Unknown keys raise ValueError (a typo must not silently train the wrong recipe). The model
    dict is merged key by key; ModelConfig.from_dict validates it when the model is built.
    """
    top = {f.name for f in dataclasses.fields(TrainConfig)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in top:
            raise ValueError(f"unknown config key {key!r}; expected one of {sorted(top)}")
        if key in SECTIONS:
            changes[key] = _replace_section(getattr(cfg, key), value, key)
        elif key == "model":
            changes[key] = {**cfg.model, **dict(value)}
        else:
            changes[key] = value
    return dataclasses.replace(cfg, **changes)


def load_config_file(path: Path, base: TrainConfig | None = None) -> TrainConfig:
    """Applies a JSON config file (same nesting as to_dict, any subset of keys) onto base."""
    try:
        overrides = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"config file {path}: {exc}") from exc
    return merge(base or TrainConfig(), overrides)


def _replace_section(section: Any, values: dict[str, Any], name: str) -> Any:
    values = renamed_keys(values, name)
    known = {f.name for f in dataclasses.fields(section)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {name} config keys {sorted(unknown)}; expected {sorted(known)}")
    return dataclasses.replace(section, **values)


def renamed_keys(values: dict[str, Any], section: str) -> dict[str, Any]:
    """values with the section's old key names replaced by the new ones (RENAMED_KEYS)."""
    out = dict(values)
    for old, new in RENAMED_KEYS.get(section, {}).items():
        if old not in out:
            continue
        if new in out:
            raise ValueError(f"{section} config names both {old!r} and its new name {new!r}")
        out[new] = out.pop(old)
    return out
