"""Per-sample multiply-adds (ForwardOutput.macs) against torch's flop counter on the whole
forward, for every action of every layout at two iteration counts."""

import pytest
import torch

from model.actions import ACTIONS, TTA
from model.config import ModelConfig
from model.macs import count_macs
from model.network import build_model

LAYOUTS = {
    "chained": ModelConfig(arch="cnn", width=8, tta_action=True),
    "whitened": ModelConfig(arch="cnn", width=16, stem="whiten", stem_width=8, tta_action=True),
    "staged": ModelConfig(arch="cnn", stem="staged", stage_widths=(8, 16, 16), tta_action=True),
    "lstm": ModelConfig(arch="lstm", n_classes=3, vocab_size=50, embed_dim=8, hidden_size=8),
}


def _sample(cfg: ModelConfig, tokens: int = 7):
    gen = torch.Generator().manual_seed(0)
    if cfg.arch == "lstm":
        return torch.randint(1, 50, (1, tokens), generator=gen), torch.tensor([tokens])
    return torch.randn(1, 3, 32, 32, generator=gen), None


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("iterations", [2, 5])
def test_macs_match_the_flop_counter_for_every_action(layout, iterations):
    # tol 0: no sample converges early, so every loop runs exactly `iterations` iterations.
    cfg = ModelConfig(**{**LAYOUTS[layout].to_dict(), "tol": 0.0, "max_iter": iterations})
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    x, lengths = _sample(cfg)
    for action in range(net.n_actions):
        with torch.no_grad():
            counted = count_macs(lambda: net(x, torch.tensor([action]), lengths))  # noqa: B023
            out = net(x, torch.tensor([action]), lengths)
        loops = 0 < action < TTA
        assert int(out.iterations) == (iterations if loops else 0), ACTIONS[action]
        assert int(out.macs) == counted, (layout, ACTIONS[action])


def test_a_text_sample_pays_for_its_own_tokens():
    net = build_model(LAYOUTS["lstm"]).eval()
    short, short_len = _sample(net.config, tokens=4)
    long, long_len = _sample(net.config, tokens=9)
    padded = torch.zeros(2, 9, dtype=torch.long)
    padded[0, :4], padded[1] = short[0], long[0]
    with torch.no_grad():
        batched = net(padded, torch.zeros(2, dtype=torch.long), torch.tensor([4, 9])).macs
        alone = [
            net(s, torch.zeros(1, dtype=torch.long), n).macs
            for s, n in [(short, short_len), (long, long_len)]
        ]
    assert batched.tolist() == [int(alone[0]), int(alone[1])]
    assert batched[1] > batched[0]


def test_one_staged_pass_costs_less_than_its_loops():
    net = build_model(ModelConfig(arch="cnn", stem="staged", tta_action=True, max_iter=4, tol=0.0))
    x, _ = _sample(net.config)
    with torch.no_grad():
        macs = [int(net(x, torch.tensor([a])).macs) for a in range(net.n_actions)]
    straight, *loops, tta = macs
    assert (
        straight < min(loops)
        and max(loops) == macs[3]
        and tta == pytest.approx(4 * straight, rel=0.01)
    )
