"""Settings come from DYNALAY_* variables, typed and validated, with sane defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.core import Settings
from service.engines import ENGINES, get_engine_factory


def test_defaults():
    s = Settings()
    assert (s.port, s.model_dir, s.device, s.engine) == (8000, Path("checkpoints"), "auto", "torch")
    assert s.api_key is None and s.max_batch_size >= 1 and s.max_queue >= 1


def test_environment_overrides(monkeypatch):
    env = {"PORT": "9001", "MODEL_DIR": "/models", "DEVICE": "CPU", "MAX_BATCH_SIZE": "4",
           "MAX_QUEUE_DELAY_MS": "0", "MAX_QUEUE": "7", "REQUEST_TIMEOUT_MS": "250",
           "MAX_BODY_BYTES": "1000", "LOG_LEVEL": "WARNING", "TOP_K": "3"}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(f"DYNALAY_{key}", value)
    s = Settings()
    assert (s.port, s.model_dir, s.device, s.log_level) == (9001, Path("/models"), "cpu", "warning")
    assert (s.max_batch_size, s.max_queue_delay_ms, s.max_queue) == (4, 0.0, 7)
    assert (s.request_timeout_ms, s.max_body_bytes, s.top_k) == (250.0, 1000, 3)


def test_empty_variables_mean_defaults(monkeypatch):
    monkeypatch.setenv("DYNALAY_MAX_BATCH_SIZE", "")
    monkeypatch.setenv("DYNALAY_API_KEY", "")
    assert Settings().max_batch_size == Settings.model_fields["max_batch_size"].default
    assert Settings().api_key is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("MAX_BATCH_SIZE", "0"),
        ("DEVICE", "tpu"),
        ("PORT", "http"),
        ("MAX_QUEUE", "-1"),
        ("LOOP_SCHEDULING", "request"),
        ("LOOP_POOL_SIZE", "0"),
    ],
)
def test_invalid_values_are_rejected(monkeypatch, key, value):
    monkeypatch.setenv(f"DYNALAY_{key}", value)
    with pytest.raises(ValidationError):
        Settings()


def test_loop_scheduling_defaults_to_iteration_and_reads_the_environment(monkeypatch):
    monkeypatch.setenv("DYNALAY_MAX_BATCH_SIZE", "16")
    assert (Settings().loop_scheduling, Settings().loop_pool_capacity) == ("iteration", 16)
    monkeypatch.setenv("DYNALAY_LOOP_SCHEDULING", "Batch")
    monkeypatch.setenv("DYNALAY_LOOP_POOL_SIZE", "8")
    assert (Settings().loop_scheduling, Settings().loop_pool_capacity) == ("batch", 8)


def test_the_api_key_is_never_printed(monkeypatch):
    monkeypatch.setenv("DYNALAY_API_KEY", "hunter2")
    assert "hunter2" not in repr(Settings())


def test_unknown_engine_names_the_known_ones():
    assert "torch" in ENGINES
    with pytest.raises(ValueError, match="torch"):
        get_engine_factory("tensorrt")
