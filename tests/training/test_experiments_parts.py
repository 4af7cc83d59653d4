"""The experiment harness' parts: committed configs, timing hooks, the torchdeq baseline,
inference policies against training.evaluation.metrics, and the results page without results."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch

from model.backward import BACKWARDS, solve_loop
from model.config import ModelConfig
from model.network import build_model
from training.cli import main
from training.evaluation.collect import collect
from training.evaluation.gate import gate_sweep
from training.experiments import arms, deq_solver
from training.experiments.page import write_page
from training.experiments.registry import EXPERIMENTS
from training.experiments.spec import MODES, available, load_recipe
from training.experiments.timed_inference import (
    agent_policy,
    forced_policy,
    gate_policy,
    timed_inference,
)
from training.experiments.timing import StepTimer, timed_training
from training.recipes import preset
from training.trainer import steps as steps_module
from training.trainer.optim import build_optimizers
from training.trainer.steps import StepContext


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets: one thread, so a busy shared CPU's OpenMP spin-waits cannot stall them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_experiment_has_a_config_whose_recipes_resolve():
    assert available() == sorted(EXPERIMENTS)
    for name in EXPERIMENTS:
        for mode in MODES:
            r = load_recipe(name, mode, {"data_dir": "data"})
            ModelConfig.from_dict({"arch": "cnn", **r.train.model})  # builds: keys valid
            assert r.note and r.title
            synthetic = r.train.data.dataset == "synthetic"
            assert synthetic == (mode == "dry_run")
            assert (r.train.data.data_dir == "data") == (mode != "dry_run")
            assert (r.train.device == "cuda") == (mode == "full")
            if mode == "reduced":
                assert r.train.data.train_subset and r.train.data.test_subset


def test_configs_ask_for_what_the_issue_asks():
    p = {n: load_recipe(n, "full").params for n in EXPERIMENTS}
    assert p["table41"]["arms"][:4] == ["plain", "loop_all", "deq_solver", "dynalay"]
    assert len(p["fig43a"]["seeds"]) >= 3 and len(p["fig44"]["seeds"]) >= 3
    assert len(p["fig43b"]["betas"]) >= 5 and p["fig44"]["actions"] == [0, 1, 2, 3]


def test_real_data_recipes_need_a_data_dir(capsys):
    with pytest.raises(SystemExit, match="--data-dir"):
        main(["experiment", "fig41", "--reduced", "--out", "/nonexistent", "--quiet"])


def _tiny_context(action: int | None):
    cfg = preset("tiny")
    arm = arms.dynalay() if action is None else arms.forced(action)
    cfg = arm.config(cfg)
    net = build_model(ModelConfig(width=8, max_iter=4, backward="phantom", agent_hidden=8))
    return cfg, arm, net


def test_timer_splits_forward_and_backward_and_restores_the_steps():
    cfg, arm, net = _tiny_context(action=3)
    optimizers = build_optimizers(net, cfg.optim)
    ctx = StepContext(net, cfg, 15.0, torch.Generator().manual_seed(0))
    before = dict(steps_module.STEPS)
    timer = StepTimer(torch.device("cpu"))
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    with timed_training(timer, optimizers, arm.step_overrides()) as steps:
        for _ in range(2):
            result = steps["backbone"](ctx, x, y)
            result.loss.backward()
            optimizers["backbone"].step()
    after = dict(steps_module.STEPS)
    assert after == before  # restored: the trainer's own steps again
    t = timer.timing
    assert t.steps == 2 and t.images == 16
    assert t.forward_seconds > 0 and t.backward_seconds > 0
    assert result.stats["layer_evaluations"] > 3  # the forced loop_all step ran


def test_forced_arms_share_dynalays_backbone_budget():
    cfg = load_recipe("table41", "full").train
    forced = arms.loop_all().config(cfg)
    p = cfg.phases
    assert forced.total_epochs == p.backbone_epochs + p.joint_epochs
    assert forced.optim == cfg.optim and forced.seed == cfg.seed and forced.data == cfg.data


@dataclass(frozen=True)
class _LoopCfg:
    solver: str = "anderson"
    tol: float = 1e-10
    max_iter: int = 200
    b_tol: float = 1e-10
    b_max_iter: int = 200
    phantom_steps: int = 1


def test_torchdeq_loop_matches_unrolled_autograd():
    pytest.importorskip("torchdeq")
    deq_solver.register()
    torch.manual_seed(0)
    w = torch.randn(6, 6, dtype=torch.float64)
    w = (0.6 * w / torch.linalg.matrix_norm(w, 2)).requires_grad_()
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)

    def f(z, x_):
        return torch.tanh(z @ w.T + x_)

    grads = {}
    for mode, cfg in (("torchdeq", _LoopCfg()), ("unrolled", _LoopCfg(solver="fixed_point"))):
        z, stats = solve_loop(f, torch.zeros_like(x), (x,), cfg, mode)
        (gw, gx) = torch.autograd.grad((z**2).sum(), (w, x))
        grads[mode] = torch.cat([gw.flatten(), gx.flatten()])
        assert stats.converged.all()
    rel = (grads["torchdeq"] - grads["unrolled"]).norm() / grads["unrolled"].norm()
    assert rel < 1e-5


def test_deq_baseline_says_when_it_falls_back_to_our_solver(monkeypatch):
    monkeypatch.setattr(deq_solver, "torchdeq_version", lambda: None)
    arm = arms.deq_with_solver("broyden")
    assert arm.model == {"solver": "anderson", "backward": "implicit"}
    assert "torchdeq not installed" in arm.label and arm.action == 3


def test_deq_baseline_uses_torchdeq_when_installed():
    pytest.importorskip("torchdeq")
    arm = arms.deq_with_solver("anderson")
    assert arm.model["backward"] == deq_solver.MODE and deq_solver.MODE in BACKWARDS
    net = build_model(ModelConfig(width=8, max_iter=6, **arm.model))
    out = net(torch.randn(3, 3, 32, 32), actions=torch.full((3,), 3))
    assert out.logits.shape == (3, 10) and (out.iterations > 0).all()
    assert (out.layer_evaluations == 3 + 3 * out.iterations).all()


def test_inference_policies_agree_with_training_metrics():
    torch.manual_seed(0)
    net = build_model(ModelConfig(width=8, max_iter=4, backward="phantom", agent_hidden=8))
    torch.nn.init.normal_(net.agent.net[-1].weight)  # a non-uniform agent: mixed actions
    batches = [(torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))) for _ in range(2)]
    o = collect(net, batches, forced=True)
    agent = timed_inference(net, batches, agent_policy)
    assert agent.accuracy == pytest.approx(o.correct.float().mean().item())
    assert agent.mean_layer_evaluations == pytest.approx(o.layer_evaluations.float().mean().item())
    for a in range(4):
        forced = timed_inference(net, batches, forced_policy(a))
        assert forced.accuracy == pytest.approx(o.forced_correct[:, a].float().mean().item())
        assert forced.n == 32 and forced.ms_per_image > 0
    point = gate_sweep(o, 3, (0.5,))[0]
    gate = timed_inference(net, batches, gate_policy(0.5, 3))
    assert gate.mean_layer_evaluations == pytest.approx(point["mean_layer_evaluations"])


def test_page_without_results_lists_every_experiment_as_not_run(tmp_path):
    page = write_page(tmp_path).read_text()
    assert "No experiment has results yet" in page and "Not run yet" in page
    for name in EXPERIMENTS:
        assert f"python -m training experiment {name} --data-dir data" in page


def test_agent_arms_differ_only_in_their_estimator():
    cfg = preset("tiny")
    base = arms.by_name("dynalay", {}).config(cfg)
    exact = arms.by_name("dynalay_all_actions", {}).config(cfg)
    assert base.agent.estimator == "self_critical" and exact.agent.estimator == "all_actions"
    assert dataclasses.replace(exact, agent=base.agent) == base
