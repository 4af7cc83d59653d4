"""The engine in its own process (DYNALAY_ENGINE_PROCESS, the service's default) answers what
the model computes, under both schedulings; it passes a load failure on with its words, comes
back after it is killed, and never outlives the service."""

from __future__ import annotations

import base64
import os
import signal
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from model.actions import ACTIONS
from service.app import create_app
from service.engines import (
    ENGINES,
    EngineInput,
    EngineProcessError,
    ProcessEngine,
    in_own_process,
    run_batch,
)
from tests.service.helpers import CIFAR_PNGS, serving, settings_for
from tests.service.test_predict import assert_matches, direct


@pytest.mark.parametrize("scheduling", ["iteration", "batch"])
def test_answers_from_the_engine_process_equal_the_model(model_dir, scheduling):
    settings = settings_for(model_dir, engine_process=True, loop_scheduling=scheduling)
    app = create_app(settings)
    with serving(app) as client:
        engine = app.state.dynalay.models["cifar10"].engine
        assert isinstance(engine, ProcessEngine)
        child = engine._process
        assert child.is_alive() and child.pid != os.getpid()
        for path, action in zip(CIFAR_PNGS, [None, *ACTIONS], strict=False):
            body = {"image": base64.b64encode(path.read_bytes()).decode()}
            if action is not None:
                body["action"] = action
            r = client.post("/predict", json=body)
            assert r.status_code == 200, r.text
            assert_matches(r.json(), *direct(model_dir, path, action))
        assert client.get("/models").json()["models"][0]["precision"] == "fp32"
    child.join(timeout=10)
    assert not child.is_alive()  # the drain closed it


def test_a_checkpoint_the_child_refuses_is_reported_with_its_words(tmp_path, model_dir):
    (tmp_path / "cifar10").mkdir()
    for item in (model_dir / "cifar10").iterdir():
        (tmp_path / "cifar10" / item.name).write_bytes(item.read_bytes())
    weights = next((tmp_path / "cifar10").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-64])  # truncated: its checksum fails
    app = create_app(settings_for(tmp_path, engine_process=True))
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while client.get("/healthz").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        error = client.get("/healthz").json()["error"]
    assert weights.name in error


def _inputs(n: int, action: int | None) -> list[EngineInput]:
    rng = np.random.default_rng(0)
    return [EngineInput(rng.standard_normal((3, 32, 32)).astype(np.float32), action)] * n


def test_a_killed_engine_process_fails_its_loops_then_comes_back(model_dir):
    engine = in_own_process(ENGINES["torch"])(model_dir / "cifar10", "cpu")
    local = ENGINES["torch"](model_dir / "cifar10", "cpu")
    try:
        stepper = engine.stepper(4)
        loop_all = ACTIONS.index("loop_all")
        stepper.straight(_inputs(2, loop_all), [0, 1])
        assert stepper.busy
        os.kill(engine._process.pid, signal.SIGKILL)
        engine._process.join(timeout=10)
        with pytest.raises(EngineProcessError):
            stepper.step()  # a new child answers, but the two looping samples are lost
        stepper.clear()
        batch = _inputs(3, None)
        assert stepper.run(batch).samples == run_batch(local.spec(), batch).samples
        assert engine.generation == 2
    finally:
        engine.close()


def test_the_child_exits_when_the_service_is_gone(model_dir):
    engine = in_own_process(ENGINES["torch"])(model_dir / "cifar10", "cpu")
    child = engine._process
    engine._conn.close()  # what a killed service leaves: the pipe's other end closed
    child.join(timeout=30)
    assert child.exitcode == 0
    engine.close()
