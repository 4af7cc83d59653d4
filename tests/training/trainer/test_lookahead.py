"""Lookahead: the averaged weights replace the net's, on schedule."""

import torch
from torch import nn

from training.trainer.lookahead import Lookahead, LookaheadConfig


def test_lookahead_pulls_the_weights_to_their_running_average():
    net = nn.Linear(2, 1, bias=False)
    la = Lookahead(net, LookaheadConfig(every=1, start_frac=0.0, decay=0.5))
    total = 4
    history = []
    with torch.no_grad():
        for step in range(1, total + 1):
            net.weight.add_(1.0)  # stand-in for an optimizer step
            before = net.weight.clone()
            la.after_update(step, total)
            history.append((before, net.weight.clone()))
    # Step 1 starts the average at the current weights; afterwards w ← ρ·avg + (1 − ρ)·w.
    assert torch.equal(history[0][0], history[0][1])
    avg = history[0][1]
    for step in range(2, total + 1):
        rho = 0.5 * (step / total) ** 3
        before, after = history[step - 1]
        avg = rho * avg + (1 - rho) * before
        assert torch.allclose(after, avg)


def test_lookahead_waits_for_its_start_and_averages_batchnorm_statistics():
    net = nn.BatchNorm1d(3)
    la = Lookahead(net, LookaheadConfig(every=2, start_frac=0.5, decay=0.9))
    la.after_update(1, 10)
    assert la.average is None  # before start_frac·total
    la.after_update(6, 10)
    assert la.average is not None and len(la.average) == 4  # weight, bias, running mean/var
    with torch.no_grad():
        net.running_mean.add_(1.0)
    la.end_epoch()  # ρ = 1: the weights return to the average
    assert torch.equal(net.running_mean, torch.zeros(3))
