import pytest
import torch

from training.evaluation.collect import Outcomes
from training.evaluation.gate import accuracy_at_compute, gate_sweep
from training.evaluation.metrics import full_metrics


def _outcomes() -> Outcomes:
    # 4 samples; straight confident on 0, 1; loops fix sample 2; nothing fixes sample 3.
    fc = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 1], [0, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    fe = torch.tensor([[3, 9, 11, 15]] * 4)
    actions = torch.tensor([0, 0, 1, 3])
    return Outcomes(
        labels=torch.zeros(4, dtype=torch.long),
        actions=actions,
        correct=fc.gather(1, actions[:, None]).squeeze(1),
        layer_evaluations=fe.gather(1, actions[:, None]).squeeze(1),
        macs=10 * fe.gather(1, actions[:, None]).squeeze(1),
        iterations=torch.tensor([0, 0, 6, 4]),
        converged=torch.tensor([True, True, True, False]),
        straight_top_prob=torch.tensor([0.99, 0.9, 0.4, 0.3]),
        straight_correct=fc[:, 0],
        forced_correct=fc,
        forced_evaluations=fe,
        forced_macs=10 * fe,
        forced_iterations=torch.tensor([[0, 6, 4, 4]] * 4),
        forced_converged=torch.ones(4, 4, dtype=torch.bool),
    )


def test_gate_endpoints_and_interpolation():
    sweep = gate_sweep(_outcomes(), action=3, thresholds=(0.0, 0.5, 1.01))
    assert [r["accuracy"] for r in sweep] == [0.5, 0.75, 0.75]
    assert [r["mean_layer_evaluations"] for r in sweep] == [3.0, 9.0, 15.0]
    assert accuracy_at_compute(sweep, 6.0, key="mean_layer_evaluations") == pytest.approx(0.625)
    assert accuracy_at_compute(sweep, 60.0) == pytest.approx(0.625)  # multiply-adds by default


def test_full_metrics_numbers():
    m = full_metrics(_outcomes(), alpha=0.5, beta=0.3, normalizer=15.0)
    assert m["accuracy"] == 0.75
    assert m["mean_layer_evaluations"] == pytest.approx((3 + 3 + 9 + 15) / 4)
    assert m["action_frequencies"] == {
        "straight": 0.5,
        "loop_l1": 0.25,
        "loop_l1_l2": 0.0,
        "loop_all": 0.25,
    }
    assert m["accuracy_per_action"]["loop_l1_l2"] is None
    assert m["forced"]["loop_l1"]["accuracy"] == 0.5
    assert m["oracle"] == {
        "accuracy": 0.75,
        "mean_layer_evaluations": pytest.approx(4.5),
        "mean_macs": pytest.approx(45.0),
    }
    assert m["checks"]["not_collapsed"] is True
    assert m["converged_share"] == 0.75
