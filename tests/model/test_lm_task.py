"""task="lm": the LSTM's head gives next-token logits at every position; the agent still picks
one action per sequence."""

import pytest
import torch

from model.config import ModelConfig
from model.network import build_model

TINY_LM = ModelConfig(
    arch="lstm", task="lm", n_classes=30, vocab_size=30, embed_dim=8, hidden_size=8, max_iter=8
)


def test_lm_logits_are_per_token_and_actions_per_sequence():
    torch.manual_seed(0)
    net = build_model(TINY_LM).eval()
    x = torch.randint(1, 30, (5, 7), generator=torch.Generator().manual_seed(1))
    forced = torch.tensor([0, 1, 2, 3, 1])
    with torch.no_grad():
        out = net(x, forced)
        straight = net.straight(x)
    assert out.logits.shape == out.straight_logits.shape == (5, 7, 30)
    assert out.actions.tolist() == forced.tolist() and out.agent_logits.shape == (5, 4)
    assert straight.profile.shape == (5, 3 * 8 + 2)
    assert torch.equal(out.logits[0], straight.logits[0])  # straight keeps its logits
    assert (out.layer_evaluations[1:] > 3).all()


def test_lm_config_is_validated():
    with pytest.raises(ValueError, match="task"):
        ModelConfig(arch="lstm", task="seq2seq", vocab_size=10)
    with pytest.raises(ValueError, match="lstm"):
        ModelConfig(arch="cnn", task="lm")
    assert ModelConfig.from_dict(TINY_LM.to_dict()) == TINY_LM
