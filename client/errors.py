"""Exceptions raised by the fxgate client library.

They live in one small module with no dependencies so that the client, the daemon and its
workers can all raise and catch the same classes without importing each other (or any
globus package). Names mirror ``globus_compute_sdk.errors`` where a counterpart exists, so
code written against the SDK reads the same.
"""

from __future__ import annotations

import textwrap
import time
from typing import Any

# gRPC trailing metadata key by which the daemon marks a refusal of its own, so a client
# tells "the daemon answered UNAVAILABLE (its database is locked)" from "no daemon answers".
FROM_DAEMON = "fxgate-refused-by-daemon"


class FxgateError(Exception):
    """Base class of every fxgate error, so callers can catch them all at once."""


class SerializationError(FxgateError):
    """A value could not be turned into (or parsed as) the Globus Compute wire format."""


class DeserializationError(SerializationError):
    """A serialized string could not be turned back into a Python object."""


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


class GatewayUnavailable(FxgateError):
    """No fxgate daemon answers at the address (not started, or restarting)."""


class RequestRefused(FxgateError):
    """The daemon refused a request; ``code`` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class UntrustedSocket(FxgateError):
    """The daemon's socket could have been put there by someone else; nothing was sent to it.

    Whoever answers on the socket decides what the client unpickles, so the
    client talks only to a socket that it, root or FXGATE_DAEMON_USER owns, in
    a directory nobody else can write.
    """


class DaemonPermissionDenied(GatewayUnavailable):
    """A daemon's socket is there but this user may not connect to it."""
