"""fxgate's client library: Executor, Client and futures, over local gRPC to the daemon.

Needs only grpcio, protobuf and dill. Names mirror the Globus Compute SDK and
funcX, so a script moves over by changing its import line.
"""

from client.client import Batch, Client, FuncXClient
from client.errors import (
    DeserializationError,
    FxgateError,
    GatewayUnavailable,
    RequestRefused,
    SerializationError,
    TaskExecutionFailed,
    TaskPending,
)
from client.executor import Executor, FuncXExecutor
from client.futures import ComputeFuture, FuncXFuture

FuncxTaskExecutionFailed = TaskExecutionFailed

__all__ = [
    "Batch",
    "Client",
    "ComputeFuture",
    "DeserializationError",
    "Executor",
    "FuncXClient",
    "FuncXExecutor",
    "FuncXFuture",
    "FuncxTaskExecutionFailed",
    "FxgateError",
    "GatewayUnavailable",
    "RequestRefused",
    "SerializationError",
    "TaskExecutionFailed",
    "TaskPending",
]
