"""The gRPC protocol's message classes, built from the committed descriptor of inference.proto.

`inference.binpb` is protoc's descriptor set of `inference.proto` (`make protos`; a test checks
they agree). Building the classes from it at import needs no generated code, works with any
protobuf runtime, and uses a private descriptor pool: a client library holding its own copy of
the same protocol (tritonclient registers `inference.*` in protobuf's default pool) can live in
the same process.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

PROTO = Path(__file__).with_name("inference.proto")
DESCRIPTOR_SET = Path(__file__).with_name("inference.binpb")
PACKAGE = "inference"
SERVICE_NAME = f"{PACKAGE}.GRPCInferenceService"

_POOL = descriptor_pool.DescriptorPool()
for _file in descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes()).file:
    _POOL.Add(_file)
SERVICE = _POOL.FindServiceByName(SERVICE_NAME)


def message(name: str) -> type[Message]:
    """The class of message `name`, e.g. "ModelInferRequest.InferInputTensor"."""
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))
