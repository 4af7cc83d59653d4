"""Model control on a real server: a new version swapped in under a closed-loop load of
/predict and gRPC loses nothing, a tampered checkpoint leaves the old one serving and says why,
and tritonclient's repository calls (index, load, unload) work unchanged over HTTP and gRPC."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from model.checkpoint import save_checkpoint
from model.network import build_model
from service.app import create_app
from tests.service.helpers import (
    CIFAR_CLASSES,
    CIFAR_PNGS,
    IMAGE_PREP,
    TINY_CNN,
    free_port,
    serving_on_loopback,
    settings_for,
)

PNG = CIFAR_PNGS[0].read_bytes()
KEY = "repo-secret"
AUTH = {"x-api-key": KEY}


def write_version(repo: Path, version: str, seed: int = 0) -> Path:
    """The model `cifar10` at `version`, written in place (as a trainer would overwrite it)."""
    torch.manual_seed(seed)
    net = build_model(TINY_CNN).eval()
    return save_checkpoint(
        repo / "cifar10", net, name="cifar10", version=version, classes=CIFAR_CLASSES,
        preprocessing=IMAGE_PREP,
    )  # fmt: skip


def tamper(directory: Path) -> None:
    weights = directory / "backbone.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one bit pattern changed: only the checksum can tell
    weights.write_bytes(bytes(data))


@contextlib.contextmanager
def server(repo: Path, **settings):
    """(HTTP base URL, gRPC address) of a real server with the API key set."""
    port = free_port()
    app = create_app(settings_for(repo, grpc_port=port, api_key=KEY, **settings))
    with serving_on_loopback(app) as base:
        yield base, f"127.0.0.1:{port}"


class ClosedLoop:
    """`threads` clients, half /predict and half gRPC ModelInfer, each sending its next
    request as soon as the last is answered; every answer is kept as (status, version)."""

    def __init__(self, base: str, grpc_address: str, threads: int = 8) -> None:
        self.base, self.grpc_address = base, grpc_address
        self.answers: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._http if i % 2 else self._grpc, daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> ClosedLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def versions_since(self, start: int) -> Counter:
        return Counter(version for _, version in self.answers[start:])

    def _http(self) -> None:
        with httpx.Client(base_url=self.base, headers=AUTH, timeout=30) as client:
            while not self._stop.is_set():
                answer = client.post("/predict", files={"file": ("x.png", PNG, "image/png")})
                version = answer.json().get("model_version", "") if answer.is_success else ""
                self.answers.append((f"http {answer.status_code}", version))

    def _grpc(self) -> None:
        client = grpcclient.InferenceServerClient(self.grpc_address)
        tensor = grpcclient.InferInput("image", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([PNG], dtype=object))
        try:
            while not self._stop.is_set():
                try:
                    result = client.infer("cifar10", [tensor], headers=AUTH)
                    self.answers.append(("grpc OK", result.get_response().model_version))
                except InferenceServerException as exc:
                    self.answers.append((f"grpc {exc.status()}", ""))
        finally:
            client.close()


def index(base: str) -> dict[str, dict]:
    answer = httpx.post(f"{base}/v2/repository/index", headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    return {row["name"]: row for row in answer.json()}


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.05)


def assert_nothing_lost(load: ClosedLoop, old: str, new: str, swap_at: int) -> None:
    statuses = Counter(status for status, _ in load.answers)
    assert set(statuses) <= {"http 200", "grpc OK"}, statuses
    before, after = load.versions_since(0), load.versions_since(swap_at)
    assert set(before) == {old, new} and after[new] > 0, (before, after)
    # Once the swap is done, new requests go to the new version only.
    assert set(load.versions_since(len(load.answers) - 8)) == {new}


def wait_for_answers(load: ClosedLoop, n: int) -> None:
    start = len(load.answers)
    wait_for(lambda: len(load.answers) >= start + n)


def test_poll_swaps_in_a_new_version_under_load_and_loses_nothing(tmp_path):
    write_version(tmp_path, "v1")
    with server(tmp_path, model_control="poll", poll_s=0.1) as (base, address):
        with ClosedLoop(base, address) as load:
            wait_for_answers(load, 40)
            swap_at = len(load.answers)
            write_version(tmp_path, "v2", seed=1)
            wait_for(lambda: index(base)["cifar10"]["version"] == "v2")
            wait_for_answers(load, 40)
        assert_nothing_lost(load, "v1", "v2", swap_at)
        models = httpx.get(f"{base}/models", timeout=30).json()["models"]
        assert [m["version"] for m in models] == ["v2"]
        assert httpx.get(f"{base}/readyz", timeout=30).json()["models"] == ["cifar10"]
        info = [
            line
            for line in httpx.get(f"{base}/metrics", timeout=30).text.splitlines()
            if line.startswith("dynalay_model_info{")
        ]
        assert len(info) == 1 and 'version="v2"' in info[0]


def test_poll_refuses_a_tampered_checkpoint_and_the_old_one_keeps_serving(tmp_path):
    write_version(tmp_path, "v1")
    with server(tmp_path, model_control="poll", poll_s=0.1) as (base, _):
        tamper(write_version(tmp_path, "v2", seed=1))
        wait_for(lambda: "refused" in index(base)["cifar10"]["reason"])
        row = index(base)["cifar10"]
        assert row["state"] == "READY" and row["version"] == "v1"
        assert "sha256 does not match" in row["reason"] and "v1 keeps serving" in row["reason"]
        assert "/tmp" not in row["reason"]  # the public reason names no server paths
        answer = httpx.post(f"{base}/predict", files={"file": PNG}, headers=AUTH, timeout=30)
        assert answer.status_code == 200 and answer.json()["model_version"] == "v1"
        write_version(tmp_path, "v3", seed=2)  # a good version later is taken
        wait_for(lambda: index(base)["cifar10"] == {**row, "version": "v3", "reason": ""})


def test_explicit_load_replaces_the_version_under_load_and_loses_nothing(tmp_path):
    write_version(tmp_path, "v1")
    with server(tmp_path, model_control="explicit") as (base, address):
        triton = httpclient.InferenceServerClient(base.removeprefix("http://"))
        assert not triton.is_model_ready("cifar10")  # explicit: nothing loads on its own
        triton.load_model("cifar10", headers=AUTH)
        with ClosedLoop(base, address) as load:
            wait_for_answers(load, 40)
            swap_at = len(load.answers)
            write_version(tmp_path, "v2", seed=1)
            triton.load_model("cifar10", headers=AUTH)  # returns once v2 serves
            wait_for_answers(load, 40)
        assert_nothing_lost(load, "v1", "v2", swap_at)
        tamper(write_version(tmp_path, "v3", seed=2))
        with pytest.raises(InferenceServerException, match="sha256 does not match"):
            triton.load_model("cifar10", headers=AUTH)
        row = index(base)["cifar10"]
        assert row["version"] == "v2" and "v2 keeps serving" in row["reason"]
        triton.close()


def test_tritonclient_repository_calls_over_http_and_grpc(tmp_path):
    write_version(tmp_path, "v1")
    with server(tmp_path, model_control="explicit") as (base, address):
        http = httpclient.InferenceServerClient(base.removeprefix("http://"))
        grpc = grpcclient.InferenceServerClient(address)
        with pytest.raises(InferenceServerException, match="API key"):
            http.get_model_repository_index()
        with pytest.raises(InferenceServerException, match="API key"):
            grpc.load_model("cifar10")
        expected = {"name": "cifar10", "version": "", "state": "UNAVAILABLE"}
        assert http.get_model_repository_index(headers=AUTH) == [
            {**expected, "reason": "not loaded"}
        ]
        grpc.load_model("cifar10", headers=AUTH)
        assert http.is_model_ready("cifar10") and grpc.is_model_ready("cifar10")
        row = grpc.get_model_repository_index(headers=AUTH, as_json=True)["models"][0]
        assert row == {"name": "cifar10", "version": "v1", "state": "READY"}  # empty: omitted
        http.unload_model("cifar10", headers=AUTH)
        assert not grpc.is_model_ready("cifar10")
        answer = httpx.post(f"{base}/predict", files={"file": PNG}, headers=AUTH, timeout=30)
        assert answer.status_code == 404
        http.load_model("cifar10", headers=AUTH)
        grpc.unload_model("cifar10", headers=AUTH)
        assert http.get_model_repository_index(headers=AUTH) == [{**expected, "reason": "unloaded"}]
        with pytest.raises(InferenceServerException, match="no model 'nope'"):
            grpc.load_model("nope", headers=AUTH)
        http.close(), grpc.close()


def test_load_and_unload_are_refused_without_explicit_control(tmp_path):
    write_version(tmp_path, "v1")
    with server(tmp_path) as (base, _):
        http = httpclient.InferenceServerClient(base.removeprefix("http://"))
        rows = http.get_model_repository_index(headers=AUTH)
        assert rows == [{"name": "cifar10", "version": "v1", "state": "READY", "reason": ""}]
        with pytest.raises(InferenceServerException, match="MODEL_CONTROL=none"):
            http.unload_model("cifar10", headers=AUTH)
        assert http.is_model_ready("cifar10")
        http.close()
