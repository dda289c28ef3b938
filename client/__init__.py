"""fxgate's client library: Executor, Client and futures, over local gRPC to the daemon.

Needs only grpcio, protobuf and dill. Names mirror the Globus Compute SDK and
funcX, so a script moves over by changing its import line. Names are loaded
on first use, so a short-lived command (`fxgate status`) pays only for what
it touches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from client.client import Batch, Client, FuncXClient
    from client.errors import (
        ComputeError,
        DaemonPermissionDenied,
        DeserializationError,
        FxgateError,
        GatewayUnavailable,
        MaxResultSizeExceeded,
        NotOffered,
        RequestRefused,
        SerdeError,
        SerializationError,
        TaskExecutionFailed,
        TaskPending,
        UntrustedSocket,
        VersionMismatch,
    )
    from client.executor import Executor, FuncXExecutor
    from client.futures import ComputeFuture, FuncXFuture
    from client.shell import MPIFunction, ShellFunction, ShellResult
    from client.tracking import as_completed_progress, progress

    FuncxTaskExecutionFailed = TaskExecutionFailed

_HOMES = {
    "Batch": "client.client",
    "Client": "client.client",
    "FuncXClient": "client.client",
    "ComputeError": "client.errors",
    "DaemonPermissionDenied": "client.errors",
    "MaxResultSizeExceeded": "client.errors",
    "NotOffered": "client.errors",
    "SerdeError": "client.errors",
    "VersionMismatch": "client.errors",
    "DeserializationError": "client.errors",
    "FxgateError": "client.errors",
    "GatewayUnavailable": "client.errors",
    "RequestRefused": "client.errors",
    "SerializationError": "client.errors",
    "TaskExecutionFailed": "client.errors",
    "FuncxTaskExecutionFailed": "client.errors",
    "TaskPending": "client.errors",
    "UntrustedSocket": "client.errors",
    "Executor": "client.executor",
    "FuncXExecutor": "client.executor",
    "ComputeFuture": "client.futures",
    "FuncXFuture": "client.futures",
    "MPIFunction": "client.shell",
    "ShellFunction": "client.shell",
    "ShellResult": "client.shell",
    "as_completed_progress": "client.tracking",
    "progress": "client.tracking",
}

__all__ = [
    "Batch",
    "Client",
    "ComputeError",
    "ComputeFuture",
    "DaemonPermissionDenied",
    "DeserializationError",
    "Executor",
    "FuncXClient",
    "FuncXExecutor",
    "FuncXFuture",
    "FuncxTaskExecutionFailed",
    "FxgateError",
    "GatewayUnavailable",
    "MPIFunction",
    "MaxResultSizeExceeded",
    "NotOffered",
    "RequestRefused",
    "SerdeError",
    "SerializationError",
    "ShellFunction",
    "ShellResult",
    "TaskExecutionFailed",
    "TaskPending",
    "UntrustedSocket",
    "VersionMismatch",
    "as_completed_progress",
    "progress",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'client' has no attribute {name!r}")
    attr = "TaskExecutionFailed" if name == "FuncxTaskExecutionFailed" else name
    value = getattr(importlib.import_module(home), attr)
    globals()[name] = value
    return value
