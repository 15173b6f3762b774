"""The one table between ``rossby.errors`` and gRPC status codes.

The server answers every ``RossbyError`` as a gRPC status whose details
carry a ``google.rpc.ErrorInfo`` (domain ``rossby.v1``, the stable
``reason``, string metadata). Clients turn such a status back into the same
error class with ``from_rpc_error``. Anything else is INTERNAL with a fixed
message: no stack trace or exception text ever reaches a client.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from rossby import errors

#: error class -> gRPC status code. Subclasses inherit their parent's row.
CODES: dict[type[errors.RossbyError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}

_BY_CODE: dict[grpc.StatusCode, type[errors.RossbyError]] = {v: k for k, v in CODES.items()}


def status_code(err: errors.RossbyError) -> grpc.StatusCode:
    for cls in type(err).__mro__:
        if cls in CODES:
            return CODES[cls]
    return grpc.StatusCode.INTERNAL


def rpc_code_value(err: errors.RossbyError) -> int:
    """The google.rpc.Code number, for per-item results inside a response."""
    return int(status_code(err).value[0])


def to_grpc_status(err: errors.RossbyError) -> grpc.Status:
    code = status_code(err)
    info = error_details_pb2.ErrorInfo(
        reason=err.reason, domain=errors.DOMAIN, metadata=err.metadata
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    proto = status_pb2.Status(code=code.value[0], message=err.message, details=[detail])
    return rpc_status.to_status(proto)


INTERNAL_STATUS = rpc_status.to_status(
    status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")
)


def error_info(exc: grpc.aio.AioRpcError | grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo detail of a failed call, if the server sent one."""
    status = rpc_status.from_call(exc)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def from_rpc_error(exc: grpc.aio.AioRpcError) -> errors.RossbyError:
    """Rebuild the server's error on the client side."""
    code = exc.code()
    info = error_info(exc)
    cls = _BY_CODE.get(code, errors.RossbyError)
    message = exc.details() or code.name
    if info is None:
        return cls(message, reason=code.name)
    return cls(message, reason=info.reason, metadata=dict(info.metadata))


__all__ = [
    "CODES",
    "INTERNAL_STATUS",
    "error_info",
    "from_rpc_error",
    "rpc_code_value",
    "status_code",
    "to_grpc_status",
]
