"""Finding and reaching the daemon: the address rules and one gRPC channel setup.

The daemon and every client resolve the default address the same way, so a
script needs no configuration on a machine where `fxgate serve` runs with
defaults. Calls that may meet a restarting daemon retry with backoff; the
channel itself is told to reconnect quickly (gRPC's default backoff grows to
two minutes, far too slow for a daemon restart). A unix socket is checked
before the channel exists (fxgate_contract/socket_trust.py): a socket someone else
could have planted is never sent a byte.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import grpc

from client.errors import (
    FROM_DAEMON,
    DaemonPermissionDenied,
    GatewayUnavailable,
    RequestRefused,
)
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from fxgate_contract.address import resolve_address, unix_path
from fxgate_contract.channel import open_channel
from fxgate_contract.socket_trust import check_socket, permission_denied

log = logging.getLogger(__name__)

T = TypeVar("T")
# Codes that mean "the daemon is not there right now": retry, do not fail.
TRANSIENT = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


def transient(exc: grpc.RpcError) -> bool:
    """Whether a failed call may succeed later unchanged (daemon restarting or busy).

    RESOURCE_EXHAUSTED is transient only when gRPC itself refused a call over
    the daemon's limit of concurrent calls; the daemon's own refusal of an
    oversized payload uses the same code and is final.
    """
    code = exc.code()
    if code in TRANSIENT:
        return True
    details = exc.details() or ""
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and "Concurrent RPC limit" in details


# A call that keeps failing says why (once per connection, at WARNING) at its first
# failure when no socket file exists (nothing can answer), else after FIRST_WARNING_S;
# then a reminder at INFO every REPEAT_WARNING_S while it keeps waiting.
FIRST_WARNING_S = 0.5
REPEAT_WARNING_S = 60.0


def _from_daemon(exc: grpc.RpcError) -> bool:
    """Whether the daemon itself refused the call (see gateway/service.py FROM_DAEMON)."""
    trailing = getattr(exc, "trailing_metadata", None)
    metadata = trailing() if callable(trailing) else None
    return any(key == FROM_DAEMON for key, _ in metadata or ())


def refused(exc: grpc.RpcError) -> RequestRefused:
    """The daemon's answer to a bad request, as one exception with code and message."""
    code = exc.code()
    return RequestRefused(code.name, exc.details() or code.name)


class Connection:
    """A channel and stub to one daemon, shared by a Client or an Executor."""

    def __init__(self, address: str | None = None) -> None:
        self.address = resolve_address(address)
        self.socket_path = unix_path(self.address)
        if self.socket_path is not None:
            check_socket(self.socket_path)
        self.channel = open_channel(self.address)
        self.stub = pb_grpc.GatewayStub(self.channel)  # type: ignore[no-untyped-call]
        # Whether this connection said at WARNING that no daemon answers: any caller
        # thread (submitters, watchers) reads and sets it under _warn_lock.
        self._warned = False
        self._warn_lock = threading.Lock()

    def close(self) -> None:
        self.channel.close()

    def _permission_denied(self) -> DaemonPermissionDenied | None:
        """Whether the socket is there but closed to this user (gRPC calls that UNAVAILABLE)."""
        if self.socket_path is None:
            return None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(str(self.socket_path))
            except PermissionError as exc:
                return permission_denied(self.socket_path, exc)
            except OSError:
                pass
        return None

    def _unavailable(self, exc: grpc.RpcError, what: str) -> str:
        if _from_daemon(exc):  # it answered: its own reason, e.g. a database it cannot reach
            return f"the fxgate daemon at {self.address} cannot serve {what} now: {exc.details()}"
        return (
            f"no fxgate daemon answers at {self.address} ({what}: {exc.details()}). "
            "Start one with `fxgate serve` (run with the same FXGATE_STATE_DIR, it listens "
            "at this address), or point this process at a running daemon with FXGATE_ADDRESS "
            "or FXGATE_STATE_DIR"
        )

    def _nothing_listens(self) -> bool:
        """Whether the daemon's unix socket file is absent (then no daemon can answer)."""
        return self.socket_path is not None and not self.socket_path.exists()

    def _say_waiting(self, exc: grpc.RpcError, what: str, waited: float) -> bool:
        """Say once per connection, at WARNING, why a call waits; True if it was said now."""
        if waited < FIRST_WARNING_S and not self._nothing_listens():
            return False
        with self._warn_lock:
            first, self._warned = not self._warned, True
        if first:
            log.warning("%s; waiting for it", self._unavailable(exc, what))
        return first

    def call(self, rpc: Callable[[], T], *, what: str) -> T:
        """One call; a daemon that is not there is a GatewayUnavailable."""
        try:
            return rpc()
        except grpc.RpcError as exc:
            if not transient(exc):
                raise refused(exc) from None
            denied = self._permission_denied()
            if denied is not None:
                raise denied from None
            raise GatewayUnavailable(self._unavailable(exc, what)) from None

    def call_retrying(
        self, rpc: Callable[[], T], *, what: str, stop: threading.Event | None = None
    ) -> T:
        """Retry a call until the daemon answers (it may be restarting), or stop is set.

        A permission error is final: retrying would not change it.
        """
        delay, started, warned_at = 0.05, time.monotonic(), None
        while True:
            try:
                return rpc()
            except grpc.RpcError as exc:
                if not transient(exc):
                    raise refused(exc) from None
                denied = self._permission_denied()
                if denied is not None:
                    raise denied from None
                if stop is not None and stop.is_set():
                    raise GatewayUnavailable(f"gave up on {what}: the client is stopping") from None
                now = time.monotonic()
                if warned_at is None:
                    if self._say_waiting(exc, what, now - started) or self._warned:
                        warned_at = now
                elif now - warned_at >= REPEAT_WARNING_S:
                    log.info("%s; still waiting", self._unavailable(exc, what))
                    warned_at = now
            pause = delay * random.uniform(0.5, 1.0)
            if stop is None:
                time.sleep(pause)
            else:
                stop.wait(pause)
            delay = min(delay * 2, 1.0)
