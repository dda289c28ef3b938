"""Exceptions raised by the fxgate client library.

The ones the daemon's side raises too live in fxgate_contract.errors and are the same
classes here. Names mirror ``globus_compute_sdk.errors`` where a counterpart exists, so
code written against the SDK reads the same.
"""

from __future__ import annotations

import textwrap
import time
from typing import Any

from fxgate_contract.errors import (
    FROM_DAEMON,
    DaemonPermissionDenied,
    DeserializationError,
    FxgateError,
    GatewayUnavailable,
    SerializationError,
    UntrustedSocket,
)

__all__ = [
    "FROM_DAEMON",
    "DaemonPermissionDenied",
    "DeserializationError",
    "FxgateError",
    "GatewayUnavailable",
    "RequestRefused",
    "SerializationError",
    "TaskExecutionFailed",
    "TaskPending",
    "UntrustedSocket",
]


class TaskExecutionFailed(FxgateError):
    """The remote function raised, or the worker could not run it.

    Mirrors the SDK's class of the same name: ``remote_data`` is the remote traceback
    text, ``completion_t`` the completion time as a string (now if unknown).
    """

    def __init__(
        self,
        remote_data: str,
        completion_t: str | None = None,
        task_details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(remote_data)
        self.remote_data = remote_data
        self.completion_t = completion_t or str(time.time())
        self.task_details = task_details

    def __reduce__(self) -> tuple[Any, ...]:
        # keep all three attributes when the error crosses a process boundary
        return (type(self), (self.remote_data, self.completion_t, self.task_details))

    def __str__(self) -> str:
        return "\n" + textwrap.indent(self.remote_data, " ")


class TaskPending(FxgateError):
    """The task has no result yet; ``reason`` says why (e.g. its current state)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"Task is pending due to {self.reason}"


class RequestRefused(FxgateError):
    """The daemon refused a request; ``code`` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
