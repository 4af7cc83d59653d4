"""ModelConfig.agent_choices: the agent picks among some actions; the rest stay forced-only."""

import dataclasses

import pytest
import torch

from model.actions import TTA
from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import ModelConfig
from model.network import build_model
from tests.model.conftest import TINY_CNN, cnn_batch

STRAIGHT_OR_TTA = dataclasses.replace(TINY_CNN, tta_action=True, agent_choices=("straight", "tta"))


def _eager_for_loops(net) -> None:
    """An agent whose raw scores prefer the loops by far (the barred actions)."""
    with torch.no_grad():
        net.agent.net[-1].bias.copy_(torch.tensor([0.0, 9.0, 8.0, 7.0, 1.0]))


def test_the_agent_never_picks_an_action_outside_its_choices():
    torch.manual_seed(0)
    net = build_model(STRAIGHT_OR_TTA).double().eval()
    _eager_for_loops(net)
    with torch.no_grad():
        greedy = net(cnn_batch(16)).actions
        sampled = net(cnn_batch(16), sample=True).actions
        probs = net(cnn_batch(4)).agent_logits.softmax(1)
    assert greedy.tolist() == [TTA] * 16  # the best of its choices, not the best raw score
    assert set(sampled.tolist()) <= {0, TTA}
    assert torch.equal(probs[:, 1:4], torch.zeros(4, 3, dtype=probs.dtype))
    assert net.agent_choices == (0, TTA)


def test_forced_actions_outside_the_choices_still_run():
    torch.manual_seed(0)
    net = build_model(STRAIGHT_OR_TTA).double().eval()
    free = build_model(dataclasses.replace(STRAIGHT_OR_TTA, agent_choices=())).double().eval()
    free.load_state_dict(net.state_dict())
    x, forced = cnn_batch(4), torch.tensor([1, 2, 3, 0])
    with torch.no_grad():
        torch.testing.assert_close(net(x, forced).logits, free(x, forced).logits)


def test_checkpoint_keeps_its_keys_and_round_trips_the_choices(tmp_path):
    torch.manual_seed(0)
    net = build_model(STRAIGHT_OR_TTA).eval()
    free = build_model(dataclasses.replace(STRAIGHT_OR_TTA, agent_choices=()))
    assert net.state_dict().keys() == free.state_dict().keys()  # the bar is not stored
    save_checkpoint(
        tmp_path, net, name="t", version="0.1.0", classes=list("abcdefghij"), preprocessing={}
    )
    loaded = load_checkpoint(tmp_path)
    assert loaded.config == STRAIGHT_OR_TTA  # JSON's list comes back as the tuple
    x = cnn_batch(3).float()
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(x).agent_logits, net(x).agent_logits)


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        (("straight", "tta"), "not among this model's"),  # tta_action is False
        (("loop_l1", "loop_all"), "must include 'straight'"),
        (("straight", "loop_2"), "not among this model's"),
    ],
)
def test_choices_the_model_cannot_honour_are_refused(choices, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(arch="cnn", width=8, agent_choices=choices)


def test_a_confidence_agent_reads_only_the_straight_pass_confidence():
    torch.manual_seed(0)
    config = dataclasses.replace(STRAIGHT_OR_TTA, agent_inputs="confidence")
    net = build_model(config).double().eval()
    torch.nn.init.normal_(net.agent.net[-1].weight)  # a non-trivial agent
    with torch.no_grad():
        profile = net.straight(cnn_batch(4)).profile
        moved = profile.clone()
        moved[:, :-2] = torch.randn_like(moved[:, :-2])  # other layer summaries, same confidence
        other = profile.clone()
        other[:, -2:] = torch.tensor([0.3, 1.9], dtype=other.dtype)  # unsure straight pass
        assert torch.equal(net.agent(profile), net.agent(moved))
        assert not torch.allclose(net.agent(profile), net.agent(other))
    assert net.agent.net[1].in_features == 2


def test_unknown_agent_inputs_are_refused():
    with pytest.raises(ValueError, match="agent_inputs must be one of"):
        ModelConfig(arch="cnn", width=8, agent_inputs="summaries")


def test_a_top_probability_agent_ignores_the_entropy_too():
    torch.manual_seed(0)
    config = dataclasses.replace(STRAIGHT_OR_TTA, agent_inputs="top_probability")
    net = build_model(config).double().eval()
    torch.nn.init.normal_(net.agent.net[-1].weight)
    with torch.no_grad():
        profile = net.straight(cnn_batch(4)).profile
        other_entropy = profile.clone()
        other_entropy[:, -1] = 3.0
        other_top = profile.clone()
        other_top[:, -2] = 0.2
        assert torch.equal(net.agent(profile), net.agent(other_entropy))
        assert not torch.allclose(net.agent(profile), net.agent(other_top))
    assert net.agent.net[1].in_features == 1
