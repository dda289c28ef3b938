"""Exceptions raised by the fxgate client library.

The ones the daemon's side raises too live in fxgate_contract.errors and are the same
classes here. Names mirror ``globus_compute_sdk.errors`` where a counterpart exists, so
code written against the SDK reads the same.
"""

from __future__ import annotations

import re
import textwrap
import time
from typing import Any

from fxgate_contract.errors import (
    FROM_DAEMON,
    DaemonPermissionDenied,
    DeserializationError,
    FxgateError,
    GatewayUnavailable,
    InvalidStrategy,
    SerdeError,
    SerializationError,
    UntrustedSocket,
)

__all__ = [
    "FROM_DAEMON",
    "DaemonPermissionDenied",
    "DeserializationError",
    "ComputeError",
    "FxgateError",
    "GatewayUnavailable",
    "InvalidStrategy",
    "MaxResultSizeExceeded",
    "NotOffered",
    "RequestRefused",
    "SerdeError",
    "SerializationError",
    "TaskExecutionFailed",
    "TaskPending",
    "UntrustedSocket",
    "VersionMismatch",
]


# Appended to a failure's text when it looks like a serialization problem or a lost
# worker, the two failures whose cause is usually on the submitting side.
SERIALIZATION_HINT = """

This looks like a serialization problem. Another strategy may help, e.g. source-based
code serialization when the endpoint runs another Python version:

  from globus_compute_sdk.serialize import ComputeSerializer, DillCodeSource
  executor.serializer = ComputeSerializer(strategy_code=DillCodeSource())
"""
WORKER_LOST_HINT = """*****
 A lost worker is often a Python version that differs between the submitting
 process and the endpoint: serialized code rarely loads across major versions.
*****
"""
_SERIALIZATION = re.compile("dill|pickle|serializ", re.IGNORECASE)
_WORKER_LOST = re.compile(r"\s*parsl\.\S+\.WorkerLost:")


class TaskExecutionFailed(FxgateError):
    """The remote function raised, or the worker could not run it.

    Mirrors the SDK's class of the same name: ``remote_data`` is the remote traceback
    text, ``completion_t`` the completion time as a string (now if unknown). A failure
    whose remote type could be rebuilt is raised as a subclass of both this and that
    type (futures.remote_exception), so ``except TaskExecutionFailed`` and
    ``except ValueError`` both catch it.
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
        text = textwrap.indent(self.remote_data, " ")
        message = "\n" + text
        lost = _WORKER_LOST.search(text)
        if lost or _SERIALIZATION.search(text):
            message += SERIALIZATION_HINT
        if lost:
            message += WORKER_LOST_HINT
        return message


class MaxResultSizeExceeded(Exception):
    """A task's result was larger than the endpoint sends back (the SDK's class and text)."""

    def __init__(self, result_size: int, result_size_limit: int) -> None:
        super().__init__(result_size, result_size_limit)
        self.result_size = result_size
        self.result_size_limit = result_size_limit

    def __str__(self) -> str:
        return (
            f"Task result of {self.result_size}B exceeded current "
            f"limit of {self.result_size_limit}B"
        )


class VersionMismatch(FxgateError):
    """The SDK's name for a version conflict between the submitting side and an endpoint."""

    def __init__(self, version_message: str) -> None:
        super().__init__(version_message)
        self.version_message = version_message

    def __str__(self) -> str:
        return f"Globus Compute Versioning Issue: {self.version_message}"


# The SDK's base class, under its name: ComputeError is the base of every fxgate
# error (the SDK's excludes TaskExecutionFailed).
ComputeError = FxgateError


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


class NotOffered(FxgateError, NotImplementedError):
    """An SDK method or option that fxgate deliberately does not offer; the text says why.

    A NotImplementedError too, so code that probes for an optional feature
    that way keeps working. docs/sdk-parity.md lists every such difference.
    """
