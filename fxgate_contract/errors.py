"""The exceptions both sides raise, and the mark by which the daemon signs its refusals.

`client.errors` adds the ones only a client raises (a task's remote failure,
a refused request) and is what users import; the classes here are the same
objects there.
"""

from __future__ import annotations

# gRPC trailing metadata key by which the daemon marks a refusal of its own, so a client
# tells "the daemon answered UNAVAILABLE (its database is locked)" from "no daemon answers".
FROM_DAEMON = "fxgate-refused-by-daemon"


class FxgateError(Exception):
    """Base class of every fxgate error, so callers can catch them all at once."""


class SerdeError(FxgateError):
    """Serializing or deserializing failed (the SDK's SerdeError); `reason` says why."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class SerializationError(SerdeError):
    """A value could not be turned into (or parsed as) the Globus Compute wire format."""


class DeserializationError(SerdeError):
    """A serialized string could not be turned back into a Python object."""


class InvalidStrategy(SerdeError, ValueError):
    """Not a serialization strategy fxgate can use: a SerdeError, as the SDK raises, and a
    ValueError, as fxgate raised before it matched the SDK."""


class GatewayUnavailable(FxgateError):
    """No fxgate daemon answers at the address (not started, or restarting)."""


class UntrustedSocket(FxgateError):
    """The daemon's socket could have been put there by someone else; nothing was sent to it.

    Whoever answers on the socket decides what the client unpickles, so the
    client talks only to a socket that it, root or FXGATE_DAEMON_USER owns, in
    a directory nobody else can write.
    """


class DaemonPermissionDenied(GatewayUnavailable):
    """A daemon's socket is there but this user may not connect to it."""
