"""Faults inside the model: a loop that diverges or produces NaN, non-finite scores, a batch
that raises. Each is contained: flagged and counted, or failed alone with a 500 JSON, and the
service goes on answering.

The sabotaged models are real checkpoints with bad weights, as a broken training run could
write them (checked on the network itself in `test_the_sabotage_does_what_it_says`):
- diverging: layer 1's output norm scaled by -5 flips the state's sign each step, so a loop
  over layer 1 oscillates and never meets the tolerance;
- NaN loop: layer 3's output norm scaled by 1e20 leaves the straight pass finite, but feeding
  that state back into layer 1 overflows a GroupNorm variance, so the all-layer loop computes
  NaN from its first step (the solver keeps its best iterate, the finite start);
- non-finite: a NaN norm weight makes every score NaN.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from model.actions import ACTIONS
from model.checkpoint import load_checkpoint
from model.network import DynaLayNet
from service.app import create_app
from service.engines import ENGINES, EngineInput, EngineSpec
from service.scheduling import NON_FINITE
from tests.reliability.clean_errors import problems
from tests.reliability.models import write_cnn
from tests.service.helpers import CIFAR_PNGS, TINY_CNN, reference_input, serving, settings_for

PNG = CIFAR_PNGS[0].read_bytes()


def diverging(net: DynaLayNet) -> None:
    net.backbone.layers[0].norm_out.weight.mul_(-5.0)


def nan_in_the_loop(net: DynaLayNet) -> None:
    net.backbone.layers[2].norm_out.weight.mul_(1e20)


def nan_everywhere(net: DynaLayNet) -> None:
    net.backbone.layers[0].norm1.weight[0] = float("nan")


SABOTAGE = {"diverging": (diverging, "loop_l1"), "nan-loop": (nan_in_the_loop, "loop_all")}


def strict_json(text: str) -> object:
    """json.loads, but NaN / Infinity (which Python would accept) are an error."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def unconverged(client, model: str) -> float:
    name = "dynalay_fixed_point_unconverged_total"
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels["model"] == model:
                return sample.value
    raise AssertionError(f"{name} is missing")


def predict(client, action: str | None = None, model: str | None = None):
    data = {k: v for k, v in (("action", action), ("model", model)) if v}
    return client.post("/predict", files={"file": ("x.png", PNG, "image/png")}, data=data)


@pytest.mark.parametrize("kind", SABOTAGE)
def test_the_sabotage_does_what_it_says(tmp_path, kind):
    sabotage, action = SABOTAGE[kind]
    net = load_checkpoint(write_cnn(tmp_path, sabotage=sabotage)).net
    forced = torch.full((1,), ACTIONS.index(action))
    with torch.inference_mode():
        out = net(reference_input(CIFAR_PNGS[0]), actions=forced)
    assert not out.converged.any() and torch.isfinite(out.logits).all()
    if kind == "nan-loop":
        assert torch.isinf(out.residual).all()  # no finite step: every step was NaN


@pytest.mark.parametrize("kind", SABOTAGE)
def test_a_bad_loop_is_cut_flagged_counted_and_still_answered(tmp_path, kind):
    sabotage, action = SABOTAGE[kind]
    write_cnn(tmp_path, sabotage=sabotage)
    with serving(create_app(settings_for(tmp_path))) as client:
        before = unconverged(client, "cifar10")
        answers = [predict(client, action) for _ in range(3)]
        after = unconverged(client, "cifar10")
        assert predict(client, "straight").status_code == 200  # the service goes on
    for answer in answers:
        assert answer.status_code == 200, answer.text
        body = strict_json(answer.text)
        assert body["converged"] is False
        assert body["iterations"] == TINY_CNN.max_iter  # cut at max_iter
    assert after - before == len(answers)


def test_non_finite_scores_fail_alone_with_a_500_json_and_the_service_goes_on(tmp_path):
    write_cnn(tmp_path, "broken", sabotage=nan_everywhere)
    write_cnn(tmp_path, "cifar10")
    with serving(create_app(settings_for(tmp_path))) as client:
        bad = predict(client, model="broken")
        good = predict(client, model="cifar10")
        ready = client.get("/readyz")
    assert bad.status_code == 500 and strict_json(bad.text) == {"error": NON_FINITE}
    assert problems(bad) == ["server error 500"]  # a 500, but a clean one
    assert good.status_code == 200 and ready.status_code == 200


class FailingOn:
    """The real torch engine, raising for any batch holding an input that forces `action`."""

    def __init__(self, directory: Path, device: str, action: int) -> None:
        self.inner = ENGINES["torch"](directory, device)
        self.name, self.device, self.meta = self.inner.name, self.inner.device, self.inner.meta
        self.precision, self.layout = self.inner.precision, self.inner.layout
        self.action = action

    def warmup(self) -> None:
        self.inner.warmup()

    def spec(self) -> EngineSpec:
        inner = self.inner.spec()
        return dataclasses.replace(inner, collate=partial(self._collate, inner.collate))

    def _collate(self, collate, batch: Sequence[EngineInput]):
        if any(item.action == self.action for item in batch):
            raise RuntimeError("/secret/path/engine.py: simulated kernel failure")
        return collate(batch)


def failing_factory(action: int) -> Callable[[Path, str], FailingOn]:
    return lambda directory, device: FailingOn(directory, device, action)


def test_an_exception_in_a_batch_fails_only_that_batch(tmp_path):
    write_cnn(tmp_path)
    settings = settings_for(tmp_path, engine="failing", max_batch_size=1)
    poisoned = ACTIONS.index("loop_l1_l2")
    app = create_app(settings, engines={"failing": failing_factory(poisoned)})
    with serving(app) as client:
        answers = [predict(client, action) for action in ("loop_l1_l2", "straight") * 3]
        ready = client.get("/readyz")
    statuses = [a.status_code for a in answers]
    assert statuses == [500, 200] * 3
    for failed in answers[::2]:
        assert strict_json(failed.text)["error"].startswith("inference failed for the batch")
        assert "secret" not in failed.text  # the exception's text stays in the log
    assert ready.status_code == 200
