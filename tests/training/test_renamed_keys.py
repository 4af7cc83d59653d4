"""Renamed config keys (training.config.RENAMED_KEYS): phase 1 is `backbone_epochs`, as the code
names the phase, and the lr ramp `optim.ramp_frac` ("warmup" is the engines' run before
readiness), the agent's refits over its cached rewards `agent.replay_epochs` (a "pass" is the
network's); files written with `warmup_epochs`, `warmup_frac` or `replay_passes` (checkpoints,
run states, recipes, config files) load to the same config, and everything shipped uses the new
names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.cli import build_parser
from training.config import RENAMED_KEYS, TrainConfig, load_config_file, merge
from training.fit_command import resolve_fit_config
from training.recipes import RECIPE_DIR, preset, recipe_names

ROOT = Path(__file__).resolve().parents[2]
# The checkpoints in the repo, written before the rename: they must keep loading.
SHIPPED_CHECKPOINTS = sorted(
    p.parent for d in ("checkpoints", "models") for p in (ROOT / d).glob("*/config.json")
)
SHIPPED_CONFIGS = sorted(RECIPE_DIR.glob("*.json")) + sorted(
    (ROOT / "configs" / "experiments").glob("*.json")
)


def _old_keys() -> set[str]:
    return {old for renames in RENAMED_KEYS.values() for old in renames}


def test_an_old_key_config_loads_to_the_same_config():
    agent = {"estimator": "all_actions"}
    old = {
        "phases": {"warmup_epochs": 3, "agent_epochs": 2},
        "optim": {"warmup_frac": 0.1},
        "agent": {**agent, "replay_passes": 5},
    }
    new = {
        "phases": {"backbone_epochs": 3, "agent_epochs": 2},
        "optim": {"ramp_frac": 0.1},
        "agent": {**agent, "replay_epochs": 5},
    }
    assert TrainConfig.from_dict(old) == TrainConfig.from_dict(new)
    assert TrainConfig.from_dict(old).agent.replay_epochs == 5
    assert TrainConfig.from_dict(old).phases.backbone_epochs == 3
    assert TrainConfig.from_dict(old).optim.ramp_frac == 0.1


def test_an_old_key_config_file_loads_to_the_same_config(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"phases": {"warmup_epochs": 5}}))
    (tmp_path / "new.json").write_text(json.dumps({"phases": {"backbone_epochs": 5}}))
    assert load_config_file(tmp_path / "old.json") == load_config_file(tmp_path / "new.json")


@pytest.mark.parametrize(
    "overrides",
    [
        {"phases": {"warmup_epochs": 1, "backbone_epochs": 2}},
        {"optim": {"warmup_frac": 0.1, "ramp_frac": 0.2}},
    ],
)
def test_a_config_naming_both_the_old_and_the_new_key_is_rejected(overrides):
    with pytest.raises(ValueError, match="both"):
        merge(TrainConfig(), overrides)


def test_a_stored_config_round_trips_under_the_new_name():
    stored = TrainConfig.from_dict(
        {"phases": {"warmup_epochs": 4}, "optim": {"warmup_frac": 0.2}}
    ).to_dict()
    assert "warmup_epochs" not in stored["phases"] and stored["phases"]["backbone_epochs"] == 4
    assert "warmup_frac" not in stored["optim"] and stored["optim"]["ramp_frac"] == 0.2
    assert TrainConfig.from_dict(stored).phases.backbone_epochs == 4
    assert TrainConfig.from_dict(stored).optim.ramp_frac == 0.2


def test_the_old_flag_still_sets_phase_one():
    args = build_parser("fit").parse_args(["fit", "--out", "x/y", "--warmup-epochs", "7"])
    assert resolve_fit_config(args).phases.backbone_epochs == 7


def test_the_old_flag_still_sets_the_lr_ramp():
    args = build_parser("fit").parse_args(["fit", "--out", "x/y", "--warmup-frac", "0.3"])
    assert resolve_fit_config(args).optim.ramp_frac == 0.3


@pytest.mark.parametrize("directory", SHIPPED_CHECKPOINTS, ids=lambda p: p.name)
def test_shipped_checkpoints_training_configs_load(directory):
    stored = json.loads((directory / "config.json").read_text())["train"]["config"]
    cfg = TrainConfig.from_dict(stored)
    phases, optim = stored["phases"], stored["optim"]
    assert cfg.phases.backbone_epochs == phases.get("warmup_epochs", phases.get("backbone_epochs"))
    assert cfg.optim.ramp_frac == optim.get("warmup_frac", optim.get("ramp_frac"))
    agent = stored.get("agent", {})
    assert cfg.agent.replay_epochs == agent.get("replay_passes", agent.get("replay_epochs", 0))


def test_shipped_checkpoints_were_found():
    assert {p.name for p in SHIPPED_CHECKPOINTS} >= {"cifar10", "imdb", "cifar10-staged"}


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_recipes_and_configs_use_the_new_names(path):
    text = path.read_text()
    assert not [old for old in _old_keys() if f'"{old}"' in text]


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_loads(name):
    assert isinstance(preset(name), TrainConfig)
