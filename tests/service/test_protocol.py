"""The committed gRPC descriptor is what protoc makes of inference.proto, and it speaks the
same wire protocol as Triton's own client (same package, methods, field numbers)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from google.protobuf import descriptor_pb2

from service.oip import DESCRIPTOR_SET, PROTO, SERVICE, message


def test_the_committed_descriptor_is_current(tmp_path):
    fresh = tmp_path / "inference.binpb"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO.parent}",
         f"--descriptor_set_out={fresh}", str(PROTO)],
        check=True,
    )  # fmt: skip
    parse = descriptor_pb2.FileDescriptorSet.FromString
    assert parse(fresh.read_bytes()) == parse(DESCRIPTOR_SET.read_bytes()), "run `make protos`"


def test_messages_round_trip_through_tritonclients_own_classes():
    service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2")
    triton_methods = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert {m.name for m in SERVICE.methods} <= set(triton_methods.methods_by_name)
    request = message("ModelInferRequest")(model_name="m", id="7")
    request.parameters["action"].string_param = "loop_all"
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[1, 2])
    tensor.contents.fp32_contents.extend([0.5, 1.5])
    request.raw_input_contents.append(b"\x01\x02")
    theirs = service_pb2.ModelInferRequest.FromString(request.SerializeToString())
    assert theirs.parameters["action"].string_param == "loop_all"
    assert list(theirs.inputs[0].contents.fp32_contents) == [0.5, 1.5]
    assert theirs.raw_input_contents[0] == b"\x01\x02"
    config = service_pb2.ModelConfigResponse()
    ours = message("ModelConfigResponse")()
    ours.config.max_batch_size = 32
    ours.config.input.add(name="input", data_type=11, dims=[3, 32, 32], format=2)
    ours.config.dynamic_batching.max_queue_delay_microseconds = 2000
    config.ParseFromString(ours.SerializeToString())
    assert config.config.max_batch_size == 32 and config.config.input[0].data_type == 11
    assert config.config.dynamic_batching.max_queue_delay_microseconds == 2000
