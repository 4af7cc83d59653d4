"""The Open Inference Protocol (KServe v2): the protocol-neutral model (inference), HTTP JSON
and its binary tensor extension, tensor conversion, the model-repository extension, the gRPC
server and its message classes (protocol/).
"""

from service.oip.grpc_server import GrpcServer
from service.oip.http_json import router
from service.oip.oip_repository import router as repository_router
from service.oip.protocol import DESCRIPTOR_SET, PROTO, SERVICE, message

__all__ = [
    "DESCRIPTOR_SET",
    "PROTO",
    "SERVICE",
    "GrpcServer",
    "message",
    "repository_router",
    "router",
]
