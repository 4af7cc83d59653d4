"""The gRPC listener keeps the connection limits: metadata (its head) past DYNALAY_MAX_HEAD_BYTES
is refused, a connection that never finishes the HTTP/2 handshake is closed at the head
deadline, and an idle channel that the server closed reconnects by itself."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from service.app import create_app
from tests.service.helpers import free_port, serving_on_loopback, settings_for, write_cnn_checkpoint

HEAD_TIMEOUT_S = 1.0
KEEP_ALIVE_S = 2.0  # longer than the head deadline: each is seen on its own


@pytest.fixture(scope="module")
def grpc_address(tmp_path_factory):
    repo = tmp_path_factory.mktemp("models")
    write_cnn_checkpoint(repo)
    port = free_port()
    settings = settings_for(
        repo,
        grpc_port=port,
        max_head_bytes=4096,
        head_timeout_s=HEAD_TIMEOUT_S,
        keep_alive_timeout_s=KEEP_ALIVE_S,
    )
    with serving_on_loopback(create_app(settings)):
        yield f"127.0.0.1:{port}"


def tensor() -> grpcclient.InferInput:
    image = grpcclient.InferInput("input", [1, 3, 32, 32], "FP32")
    image.set_data_from_numpy(np.zeros((1, 3, 32, 32), np.float32))
    return image


def test_metadata_past_the_head_limit_is_refused(grpc_address):
    client = grpcclient.InferenceServerClient(grpc_address)
    try:
        assert client.infer("cifar10", [tensor()], headers={"x-small": "a" * 100})
        with pytest.raises(InferenceServerException) as refused:
            client.infer("cifar10", [tensor()], headers={"x-big": "a" * 8000})
        assert "RESOURCE_EXHAUSTED" in refused.value.status()
        assert client.infer("cifar10", [tensor()])  # and the channel goes on
    finally:
        client.close()


def test_a_connection_without_a_handshake_is_closed_at_the_head_deadline(grpc_address):
    host, port = grpc_address.split(":")
    with socket.create_connection((host, int(port)), timeout=HEAD_TIMEOUT_S + 5) as sock:
        started = time.monotonic()
        sock.sendall(b"PRI * HTTP/2.0\r\n")  # half a preface, then nothing
        while sock.recv(65536):
            pass  # whatever the server sends until it closes
        waited = time.monotonic() - started
    assert HEAD_TIMEOUT_S - 0.1 <= waited < HEAD_TIMEOUT_S + 2


def test_an_idle_channel_closed_by_the_server_reconnects(grpc_address):
    client = grpcclient.InferenceServerClient(grpc_address)
    try:
        assert client.infer("cifar10", [tensor()])
        time.sleep(KEEP_ALIVE_S + 1)  # the server sent GOAWAY meanwhile
        assert client.infer("cifar10", [tensor()])
    finally:
        client.close()
