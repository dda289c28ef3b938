"""The daemon's few exception types; service.py maps each to one gRPC status code.

Library exceptions (SQLAlchemy's, pika's, requests') are converted at the edge
of the module that uses the library, so nothing above a module knows which
library it wraps.
"""

from __future__ import annotations

# How much of a client's value an error message repeats: enough to recognise it,
# never so much that the status no longer fits the client's metadata limit (8 KB)
# or one call writes megabytes of log.
SHOWN_CHARS = 40


def shown(value: object) -> str:
    """A client's value as an error message quotes it: repr, cut to SHOWN_CHARS."""
    text = repr(value)
    if len(text) <= SHOWN_CHARS + 2:
        return text
    size = len(value) if isinstance(value, str | bytes) else len(text)
    return f"{text[:SHOWN_CHARS]}…({size} chars)"


class GatewayError(Exception):
    """Base of every error the daemon raises on purpose."""


class ConfigError(GatewayError):
    """A setting is unknown or has the wrong type; the daemon refuses to start."""


class InvalidRequest(GatewayError):
    """The client sent something malformed (gRPC INVALID_ARGUMENT)."""


class NotFound(GatewayError):
    """An id names no stored thing (gRPC NOT_FOUND)."""


class TooLarge(GatewayError):
    """A payload is over the configured limit (gRPC RESOURCE_EXHAUSTED)."""


class Conflict(GatewayError):
    """The request cannot be done in the present state of things, and says how to proceed
    (gRPC FAILED_PRECONDITION): e.g. releasing a group whose tasks are unfinished."""


class StoreUnavailable(GatewayError):
    """The database is locked, full or unreachable; nothing was accepted (UNAVAILABLE)."""


class UpstreamError(GatewayError):
    """An upstream refused or failed a request; carries the upstream's message."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class AlreadyRunning(GatewayError):
    """Another daemon holds the state directory."""
