import json

import pytest
import torch

from training.cli import build_parser
from training.config import TrainConfig, load_config_file
from training.fit_command import resolve_fit_config
from training.trainer.schedule import lr_factor
from training.trainer.state import flatten_optimizer, unflatten_optimizer


def _resolve(*argv):
    return resolve_fit_config(build_parser("fit").parse_args(["fit", "--out", "x/cifar10", *argv]))


def test_thesis_defaults():
    cfg = _resolve()
    assert (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.batch_size) == ("adam", 1e-3, 64)
    assert (cfg.agent.alpha, cfg.agent.beta, cfg.agent.gamma) == (0.5, 0.3, 0.2)
    assert cfg.phases.backbone_epochs == 20 and cfg.name == "cifar10"
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_flags_override_preset_and_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"optim": {"lr": 0.05, "batch_size": 128}, "seed": 3}))
    cfg = _resolve(
        "--preset",
        "cpu",
        "--config",
        str(path),
        "--lr",
        "0.1",
        "--no-flip",
        "--model",
        "backward=implicit",
        "--width",
        "32",
        "--epochs",
        "2,1,1",
        "--grad-clip",
        "none",
    )
    assert (cfg.optim.lr, cfg.optim.batch_size, cfg.seed) == (0.1, 128, 3)
    assert cfg.optim.optimizer == "sgd" and cfg.data.flip is False
    assert cfg.model["backward"] == "implicit" and cfg.model["width"] == 32
    p = cfg.phases
    assert (p.backbone_epochs, p.agent_epochs, p.joint_epochs) == (2, 1, 1)


def test_unknown_config_keys_are_rejected(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"optim": {"learning_rate": 0.1}}))
    with pytest.raises(ValueError, match="learning_rate"):
        load_config_file(path)


def test_onecycle_schedule():
    assert lr_factor(0, 100, "onecycle", 0.2) == pytest.approx(0.02)
    assert lr_factor(20, 100, "onecycle", 0.2) == pytest.approx(1.0)
    assert lr_factor(60, 100, "onecycle", 0.2) == pytest.approx(0.5)
    assert lr_factor(100, 100, "onecycle", 0.2) == pytest.approx(0.0)
    assert lr_factor(5, 100, "constant") == 1.0


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.Adam(ps, lr=0.1),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    ],
)
def test_optimizer_state_round_trips_without_pickle(make):
    model = torch.nn.Linear(3, 2)
    opt = make(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = flatten_optimizer("o", opt)
    meta = json.loads(json.dumps(meta))
    fresh = make(model.parameters())
    fresh.load_state_dict(unflatten_optimizer("o", tensors, meta))
    a, b = opt.state_dict()["state"], fresh.state_dict()["state"]
    assert a.keys() == b.keys()
    for pid in a:
        for key in a[pid]:
            assert torch.equal(torch.as_tensor(a[pid][key]), torch.as_tensor(b[pid][key]))
