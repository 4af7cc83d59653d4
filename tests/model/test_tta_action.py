"""Action `tta`: four views of the image through the straight pass, logits averaged."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from model.actions import ACTIONS, TTA, TTA_VIEWS
from model.config import ModelConfig
from model.network import ModuleParts, build_model, straight_pass, tta_logits, tta_views
from tests.model.conftest import TINY_CNN, cnn_batch


@pytest.fixture
def tta_cnn():
    torch.manual_seed(0)
    return build_model(dataclasses.replace(TINY_CNN, tta_action=True)).double().eval()


def _views_one_by_one(x: torch.Tensor) -> list[torch.Tensor]:
    """The four views written out: the image, its mirror, each moved one pixel right/down."""
    mirror = x.flip(3)

    def moved(v):
        return F.pad(v, (1, 1, 1, 1), mode="reflect")[..., :-2, :-2]

    return [x, mirror, moved(x), moved(mirror)]


def test_views_are_the_mirror_and_the_moved_images():
    x = cnn_batch(3)
    expected = torch.cat(_views_one_by_one(x)[1:])
    assert torch.equal(tta_views(x), expected)
    assert tta_views(x).shape == (3 * 3, 3, 32, 32)


def test_tta_logits_are_the_mean_of_each_view_alone(tta_cnn):
    x = cnn_batch(4)
    with torch.no_grad():
        reference = torch.stack([tta_cnn.straight(v).logits for v in _views_one_by_one(x)])
        out = tta_cnn(x, torch.full((4,), TTA))
    torch.testing.assert_close(out.logits, reference.mean(0))
    assert out.layer_evaluations.tolist() == [3 * TTA_VIEWS] * 4
    assert out.iterations.tolist() == [0] * 4 and out.converged.all()


def test_mixed_batch_matches_each_action_alone(tta_cnn):
    x = cnn_batch(6)
    actions = torch.tensor([TTA, 0, 3, TTA, 1, 0])
    with torch.no_grad():
        mixed = tta_cnn(x, actions)
        alone = [tta_cnn(x[i : i + 1], actions[i : i + 1]).logits[0] for i in range(6)]
    torch.testing.assert_close(mixed.logits, torch.stack(alone))


def test_piece_api_gives_the_modules_answer(tta_cnn):
    x = cnn_batch(3)
    parts = ModuleParts(tta_cnn)
    with torch.no_grad():
        passed = straight_pass(parts, x)
        stepped = tta_logits(parts, passed.x, passed.logits)
        direct = tta_cnn(x, torch.full((3,), TTA)).logits
    torch.testing.assert_close(stepped, direct)


def test_agent_width_follows_the_config(tta_cnn, tiny_cnn):
    x = cnn_batch(2)
    assert tta_cnn(x).agent_logits.shape == (2, len(ACTIONS))
    assert tiny_cnn(x).agent_logits.shape == (2, len(ACTIONS) - 1)


def test_a_model_without_the_action_refuses_it(tiny_cnn):
    with pytest.raises(ValueError, match="actions are 0..3"):
        tiny_cnn(cnn_batch(2), torch.tensor([0, TTA]))


def test_text_models_cannot_take_it():
    with pytest.raises(ValueError, match="needs arch 'cnn'"):
        ModelConfig(arch="lstm", vocab_size=10, tta_action=True)


def test_old_configs_load_without_it():
    old = {k: v for k, v in TINY_CNN.to_dict().items() if k != "tta_action"}
    assert ModelConfig.from_dict(old).tta_action is False


def test_raw_confidence_agent_sees_the_confidence_unnormalised():
    torch.manual_seed(0)
    config = dataclasses.replace(TINY_CNN, tta_action=True, agent_raw_confidence=True)
    net = build_model(config).double().eval()
    profile = net.straight(cnn_batch(3)).profile
    normed = net.agent.net[0](profile)
    assert torch.equal(normed[:, -2:], profile[:, -2:])
    head = profile[:, :-2]
    torch.testing.assert_close(normed[:, :-2].mean(1), torch.zeros(3, dtype=head.dtype))
