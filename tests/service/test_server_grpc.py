"""`python -m service` serves gRPC next to HTTP from one process, and SIGTERM ends both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.service.helpers import CIFAR_PNGS, free_port, write_cnn_checkpoint
from tests.service.test_server import classify, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]


def test_a_real_server_answers_grpc_like_http_and_stops_on_sigterm(tmp_path):
    write_cnn_checkpoint(tmp_path / "models")
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DYNALAY_MODEL_DIR": str(tmp_path / "models"),
        "DYNALAY_HOST": "127.0.0.1",
        "DYNALAY_PORT": str(port),
        "DYNALAY_GRPC_PORT": str(grpc_port),
        "DYNALAY_DEVICE": "cpu",
        "DYNALAY_DRAIN_DELAY_S": "0",
        "OMP_NUM_THREADS": "1",
    }
    log_path = tmp_path / "server.log"
    with log_path.open("w+b") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_ready(base, process, log_path)
            client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            image = grpcclient.InferInput("image", [1], "BYTES")
            image.set_data_from_numpy(np.array([CIFAR_PNGS[1].read_bytes()], dtype=np.object_))
            result = client.infer("cifar10", [image])
            answer = classify(base, CIFAR_PNGS[1]).json()
            assert result.as_numpy("class_index").tolist() == [answer["class_index"]]
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
            with pytest.raises(InferenceServerException):  # the gRPC listener is gone too
                client.is_server_live(client_timeout=2)
            client.close()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    assert "gRPC inference service on 127.0.0.1:" in log_path.read_text()
