"""The shared stepper: pool admission and retirement, and answers independent of batch mates.

Every answer the stepper gives, however its sample was batched, admitted and interleaved with
others, is checked against the same input run alone through the model's own forward pass
(`DynaLayNet.forward` of a one-sample batch): same label and action, iterations within one,
probabilities within float tolerance. And batch scheduling (`run_batch`, the stepper run to
the end) answers every action as the model's forward does on the same batch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.actions import TTA
from model.checkpoint import save_checkpoint
from model.config import ModelConfig
from model.network import build_model
from service.engines import ENGINES, EngineInput, SampleResult, Stepper, run_batch
from tests.service.helpers import (
    CIFAR_CLASSES,
    CIFAR_PNGS,
    IMAGE_PREP,
    forward_answers,
    reference_input,
    write_cnn_checkpoint,
    write_text_checkpoint,
)

# float32: a loop that runs to max_iter without converging carries the reduction-order
# differences of conv kernels at different batch sizes through every step (measured up to
# 1.4e-5 on the whitened-stem CNN after 20 unconverged iterations).
PROB_TOL = 5e-5
ACTION_CHOICES = (None, 0, 1, 2, 3)  # None: the agent decides (straight for these tiny nets)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; a busy 2-core box
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cnn_engine(tmp_path_factory):
    return ENGINES["torch"](write_cnn_checkpoint(tmp_path_factory.mktemp("cnn")), "cpu")


@pytest.fixture(scope="module")
def lstm_engine(tmp_path_factory):
    return ENGINES["torch"](write_text_checkpoint(tmp_path_factory.mktemp("lstm")), "cpu")


@pytest.fixture(scope="module")
def whiten_engine(tmp_path_factory):
    """The whitened-stem CNN (BatchNorm stem, one-conv loop layers): another backbone."""
    config = ModelConfig(arch="cnn", n_classes=10, width=8, stem="whiten", stem_width=8)
    return ENGINES["torch"](_save(tmp_path_factory.mktemp("whiten"), config), "cpu")


@pytest.fixture(scope="module")
def anderson_engine(tmp_path_factory):
    config = ModelConfig(arch="cnn", n_classes=10, width=8, solver="anderson")
    return ENGINES["torch"](_save(tmp_path_factory.mktemp("anderson"), config), "cpu")


@pytest.fixture(scope="module")
def capped_engine(tmp_path_factory):
    config = ModelConfig(arch="cnn", n_classes=10, width=8, tol=1e-9, max_iter=3)
    return ENGINES["torch"](_save(tmp_path_factory.mktemp("capped"), config), "cpu")


@pytest.fixture(scope="module")
def staged_engine(tmp_path_factory):
    """Stages of three shapes (model/staged.py): a loop state packs states of several shapes."""
    config = ModelConfig(
        arch="cnn", n_classes=10, stem="staged", stage_widths=(8, 16, 16), tol=1e-3, max_iter=6,
        tta_action=True,
    )  # fmt: skip
    return ENGINES["torch"](_save(tmp_path_factory.mktemp("staged"), config), "cpu")


def _save(directory: Path, config: ModelConfig) -> Path:
    torch.manual_seed(0)
    net = build_model(config).eval()
    return save_checkpoint(
        directory / "m", net, name="m", version="t", classes=CIFAR_CLASSES,
        preprocessing=IMAGE_PREP,
    )  # fmt: skip


def images(n: int = 10) -> list[np.ndarray]:
    """The fixture PNGs (as the service decodes them), then seeded noise: (3, 32, 32) each."""
    pngs = [reference_input(path)[0].numpy() for path in CIFAR_PNGS]
    rng = np.random.default_rng(0)
    return (pngs + [rng.standard_normal((3, 32, 32)).astype(np.float32) for _ in range(n)])[:n]


def texts(n: int = 10) -> list[np.ndarray]:
    """Token rows of lengths 1..12: a loop pool holding them mixes padded lengths."""
    rng = np.random.default_rng(1)
    return [rng.integers(2, 30, size=int(t)).astype(np.int64) for t in rng.integers(1, 13, n)]


def alone(engine, item: EngineInput) -> SampleResult:
    return forward_answers(engine, [item], item.action)[0]


def assert_same(got: SampleResult, want: SampleResult) -> None:
    assert got.action == want.action
    assert got.class_index == want.class_index
    assert abs(got.iterations - want.iterations) <= 1
    if got.iterations == want.iterations:
        assert got.converged == want.converged
        assert got.layer_evaluations == want.layer_evaluations
        assert got.macs == want.macs
    assert np.abs(np.subtract(got.probabilities, want.probabilities)).max() <= PROB_TOL


def drain(stepper: Stepper, answers: dict[int, SampleResult]) -> None:
    while stepper.busy:
        answers.update(stepper.step().answered)


# ---- admission and retirement ---------------------------------------------------------------


def test_straight_inputs_are_answered_by_the_straight_pass_and_loops_wait(cnn_engine):
    stepper = Stepper(cnn_engine.spec(), capacity=4)
    data = images(6)
    batch = [EngineInput(x, a) for x, a in zip(data, (0, 3, None, 1, 3, 2), strict=True)]
    outcome = stepper.straight(batch, keys=[10, 11, 12, 13, 14, 15])
    assert sorted(key for key, _ in outcome.answered) == [10, 12]  # forced straight, agent's
    assert sorted(outcome.looped) == [11, 13, 14, 15]
    assert (stepper.iterating, stepper.waiting) == (0, 4)  # admitted by the next step
    for key, sample in outcome.answered:
        assert_same(sample, alone(cnn_engine, batch[key - 10]))
        assert (sample.action, sample.iterations, sample.layer_evaluations) == (0, 0, 3)


def test_tta_inputs_are_answered_with_the_straight_pass_and_never_wait(cnn_engine):
    assert cnn_engine.meta.actions[TTA] == "tta"
    stepper = Stepper(cnn_engine.spec(), capacity=4)
    batch = [EngineInput(x, a) for x, a in zip(images(4), (TTA, 1, TTA, 0), strict=True)]
    outcome = stepper.straight(batch, keys=[0, 1, 2, 3])
    assert sorted(key for key, _ in outcome.answered) == [0, 2, 3] and outcome.looped == [1]
    for key, sample in outcome.answered:
        assert_same(sample, alone(cnn_engine, batch[key]))
    assert dict(outcome.answered)[0].layer_evaluations == 12


def test_the_pool_never_holds_more_than_its_capacity_and_admits_first_come_first(cnn_engine):
    stepper = Stepper(cnn_engine.spec(), capacity=3)
    data = images(8)
    items = [EngineInput(x, 3) for x in data[:5]] + [EngineInput(x, 1) for x in data[5:]]
    stepper.straight(items[:5], keys=range(5))
    stepper.straight(items[5:], keys=range(5, 8))
    admitted: list[int] = []  # keys in the order they entered the pool
    answers: dict[int, SampleResult] = {}
    while stepper.busy:
        step = stepper.step()
        assert step.stepped <= 3 and step.iterating <= 3
        admitted += [k for k in stepper.iterating_keys if k not in admitted]
        admitted += [k for k, _ in step.answered if k not in admitted]  # in and out at once
        assert step.iterating + step.waiting + len(answers) + len(step.answered) == 8
        answers.update(step.answered)
    assert sorted(admitted[:3]) == [0, 1, 2]
    assert admitted.index(3) < admitted.index(5) and admitted.index(4) < admitted.index(5)
    for key, item in enumerate(items):
        assert_same(answers[key], alone(cnn_engine, item))


def test_a_sample_retires_in_the_step_its_loop_stops(cnn_engine):
    stepper = Stepper(cnn_engine.spec(), capacity=8)
    data = images(4)
    want = {k: alone(cnn_engine, EngineInput(x, 2)) for k, x in enumerate(data)}
    stepper.straight([EngineInput(x, 2) for x in data], keys=range(4))
    retired_at, step_no = {}, 0
    while stepper.busy:
        step_no += 1
        for key, _ in stepper.step().answered:
            retired_at[key] = step_no
    for key, sample in want.items():
        assert abs(retired_at[key] - sample.iterations) <= 1  # one step is one iteration
    assert len(set(retired_at.values())) > 1  # the fixture converges at different iterations


def test_samples_admitted_mid_loop_join_the_running_group(cnn_engine):
    stepper = Stepper(cnn_engine.spec(), capacity=8)
    data = images(6)
    answers: dict[int, SampleResult] = {}
    stepper.straight([EngineInput(x, 3) for x in data[:3]], keys=range(3))
    answers.update(stepper.step().answered)
    stepper.straight([EngineInput(x, 3) for x in data[3:]], keys=range(3, 6))
    joined = stepper.step()
    assert joined.stepped == 3 - len(answers) + 3  # one batched iteration: old and new together
    answers.update(joined.answered)
    drain(stepper, answers)
    for key, x in enumerate(data):
        assert_same(answers[key], alone(cnn_engine, EngineInput(x, 3)))


def test_an_evicted_sample_is_never_answered_and_leaves_the_others_alone(cnn_engine):
    stepper = Stepper(cnn_engine.spec(), capacity=8)
    data = images(4)
    stepper.straight([EngineInput(x, 3) for x in data], keys=range(4))
    stepper.step()
    answers: dict[int, SampleResult] = {}
    answers.update(stepper.step(evict={1, 2}).answered)
    drain(stepper, answers)
    assert set(answers) <= {0, 3} and not stepper.busy
    for key in answers:
        assert_same(answers[key], alone(cnn_engine, EngineInput(data[key], 3)))


def test_a_loop_cut_at_max_iter_answers_its_best_iterate(capped_engine):
    stepper = Stepper(capped_engine.spec(), capacity=4)
    data = images(4)
    answers: dict[int, SampleResult] = {}
    stepper.straight([EngineInput(x, 1) for x in data], keys=range(4))
    drain(stepper, answers)
    for key, x in enumerate(data):
        want = alone(capped_engine, EngineInput(x, 1))
        assert (want.converged, want.iterations) == (False, 3)  # the path under test
        assert_same(answers[key], want)


def test_a_history_solver_is_solved_whole_in_its_admitting_step(anderson_engine):
    stepper = Stepper(anderson_engine.spec(), capacity=4)
    data = images(6)
    stepper.straight([EngineInput(x, a) for x, a in zip(data, (1, 2, 3, 1, 2, 3), strict=True)],
                     keys=range(6))  # fmt: skip
    first = stepper.step()
    assert first.stepped == 4 and len(first.answered) == 4  # capacity 4: two wait
    answers = dict(first.answered)
    drain(stepper, answers)
    for key, (x, a) in enumerate(zip(data, (1, 2, 3, 1, 2, 3), strict=True)):
        assert_same(answers[key], alone(anderson_engine, EngineInput(x, a)))


def test_deferred_read_back_gives_the_same_answers_one_step_later(cnn_engine):
    """The CUDA path (answers read with the next step's stop mask), exercised on the CPU."""
    data = images(6)
    batch = [EngineInput(x, a) for x, a in zip(data, (1, 2, 3, 3, 2, 1), strict=True)]
    answers = {}
    for defer in (False, True):
        stepper = Stepper(cnn_engine.spec(), capacity=6, defer_reads=defer)
        stepper.straight(batch, keys=range(6))
        got, steps = {}, 0
        while stepper.busy:
            got.update(stepper.step().answered)
            steps += 1
        answers[defer] = (got, steps)
    (now, steps_now), (later, steps_later) = answers[False], answers[True]
    assert steps_later == steps_now + 1  # one more step reads the last retirements
    for key in range(6):
        assert now[key] == later[key]


@pytest.mark.parametrize("action", [None, 0, 1, 2, 3, TTA])
@pytest.mark.parametrize("model", ["cnn", "lstm", "staged", "anderson"])
def test_batch_scheduling_answers_every_action_as_the_models_forward(request, model, action):
    engine = request.getfixturevalue(f"{model}_engine")
    if action is not None and action >= len(engine.meta.actions):
        pytest.skip(f"{model} offers no action {action}")
    data = texts(6) if model == "lstm" else images(6)
    batch = [EngineInput(x, action) for x in data]
    output = run_batch(engine.spec(), batch)
    assert set(output.section_seconds) == {"straight", "agent", "loop", "head"}
    want = forward_answers(engine, batch, action)
    for got, reference in zip(output.samples, want, strict=True):
        assert_same(got, reference)
    if action is not None:
        assert {got.action for got in output.samples} == {action}


# ---- the result-independence property ---------------------------------------------------------

SCHEDULE = st.lists(
    st.tuples(st.integers(0, 9), st.sampled_from(ACTION_CHOICES), st.integers(0, 3)),
    min_size=1,
    max_size=14,
)  # (input index, forced action, loop steps to run before the next arrival)


@pytest.mark.parametrize("arch", ["cnn", "whiten", "lstm"])
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(schedule=SCHEDULE, capacity=st.integers(1, 6), batch_cut=st.integers(1, 4))
def test_an_answer_never_depends_on_what_it_was_batched_with(
    arch, cnn_engine, whiten_engine, lstm_engine, schedule, capacity, batch_cut
):
    engine = {"cnn": cnn_engine, "whiten": whiten_engine, "lstm": lstm_engine}[arch]
    data = texts() if arch == "lstm" else images()
    stepper = Stepper(engine.spec(), capacity=capacity)
    items = [EngineInput(data[index], action) for index, action, _ in schedule]
    answers: dict[int, SampleResult] = {}
    for start in range(0, len(items), batch_cut):  # arrivals come in batches of batch_cut
        keys = list(range(start, min(start + batch_cut, len(items))))
        answers.update(stepper.straight([items[k] for k in keys], keys).answered)
        for _ in range(schedule[keys[-1]][2]):
            answers.update(stepper.step().answered)
    drain(stepper, answers)
    assert sorted(answers) == list(range(len(items)))
    for key, item in enumerate(items):
        assert_same(answers[key], alone(engine, item))


def test_the_stepper_replaces_nothing_of_the_engines_own_run(cnn_engine):
    """The torch engine's run() stays the model's forward; its spec() only hands out parts."""
    spec = cnn_engine.spec()
    assert dataclasses.is_dataclass(spec) and spec.solver == "fixed_point"
    assert spec.parts.net is cnn_engine.net


@pytest.mark.gpu
def test_a_loop_step_waits_on_the_device_once(tmp_path):
    """On CUDA a step reads back once (its stop mask with the last step's answers): nothing per
    sample. torch's sync debug mode warns at every host wait; count them over one step."""
    import warnings

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    engine = ENGINES["torch"](write_cnn_checkpoint(tmp_path), "cuda")
    stepper = Stepper(engine.spec(), capacity=16)
    stepper.straight([EngineInput(x, a) for x, a in zip(images(8), (1, 2, 3) * 3, strict=False)],
                     keys=range(8))  # fmt: skip
    stepper.step()  # first admission
    waits = []
    while stepper.busy:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                stepper.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        waits.append(sum("synchroniz" in str(w.message) for w in caught))
    assert waits and all(n == 1 for n in waits), waits


@pytest.mark.parametrize("action", [None, 0, 1, 2, 3, TTA])
def test_staged_loops_step_like_the_forward(staged_engine, action):
    stepper = Stepper(staged_engine.spec(), capacity=3)  # fewer places than samples
    batch = [EngineInput(x, action) for x in images(6)]
    answers = dict(stepper.straight(batch, keys=range(6)).answered)
    drain(stepper, answers)
    for key, item in enumerate(batch):
        assert_same(answers[key], alone(staged_engine, item))
