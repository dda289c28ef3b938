"""Who may call a daemon that listens on TCP: TLS for the channel, a bearer token per call.

On a unix socket the file mode (0600) decides who may connect, so no check
runs there. A TCP port is open to the network, so the daemon refuses to
serve one without a certificate and a token, and every call must carry
``authorization: Bearer <token>`` (what ``grpc.access_token_call_credentials``
sends). A call without the token is refused before its request is even
parsed. A token file is re-read when it changes, so rotating the token does
not need a restart.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from fxgate_contract.credentials import read_token_file
from gateway.config import Settings
from gateway.errors import ConfigError

log = logging.getLogger(__name__)

# Shorter tokens are guessable; `openssl rand -hex 32` makes a good one.
MIN_TOKEN_CHARS = 16

UNAUTHENTICATED_MESSAGE = (
    "missing or wrong token: set FXGATE_AUTH_TOKEN or FXGATE_AUTH_TOKEN_FILE "
    "in the client to the daemon's auth token"
)


def _read(setting: str, path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"setting {setting!r}: cannot read {path}: {exc.strerror}") from None


def _read_token(path: str) -> str:
    try:
        return read_token_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"setting 'auth_token_file': cannot read {path}: {reason}") from None


def _check_token(token: str, settings: Settings) -> str:
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"address {settings.resolved_address} is TCP: set 'auth_token' or 'auth_token_file' "
            f"to a token of at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"
        )
    return token


class DaemonToken:
    """The token TCP callers must present: the setting, or the file, re-read when it changes.

    A changed file takes effect within REREAD_S, so a token is rotated without
    a restart (which would drop every client's stream). A file that becomes
    unreadable or too short keeps the last good token in force, with an error
    in the log: a botched rotation does not lock every client out.
    """

    REREAD_S = 1.0

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._path = "" if settings.auth_token else settings.auth_token_file
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._version = self._file_version()
        token = settings.auth_token or (_read_token(self._path) if self._path else "")
        self._expected = _bearer(_check_token(token, settings))

    def expected(self) -> bytes:
        """The whole `authorization` value a call must carry."""
        if self._path and time.monotonic() - self._checked >= self.REREAD_S:
            with self._lock:
                if time.monotonic() - self._checked >= self.REREAD_S:
                    self._checked = time.monotonic()
                    self._reread()
        return self._expected

    def _file_version(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(Path(self._path).expanduser())
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _reread(self) -> None:
        version = self._file_version()
        if version == self._version:
            return
        self._version = version
        try:
            token = _read_token(self._path)
            self._expected = _bearer(_check_token(token, self._settings))
        except ConfigError as exc:
            log.error("auth token file unusable (%s); the previous token stays in force", exc)
            return
        log.info("auth token re-read from %s", self._path)


def _bearer(token: str) -> bytes:
    return f"Bearer {token}".encode()


def server_credentials(settings: Settings) -> grpc.ServerCredentials:
    """TLS from the PEM certificate chain and key the settings name."""
    if not (settings.tls_cert_file and settings.tls_key_file):
        raise ConfigError(
            f"address {settings.resolved_address} is TCP: set 'tls_cert_file' and "
            "'tls_key_file' (PEM) so the channel is encrypted"
        )
    cert = _read("tls_cert_file", settings.tls_cert_file)
    key = _read("tls_key_file", settings.tls_key_file)
    try:
        return grpc.ssl_server_credentials([(key, cert)])
    except Exception as exc:  # noqa: BLE001 - grpc reports unusable PEM as various errors
        raise ConfigError(f"TLS certificate or key unusable: {exc}") from None


class BearerTokenCheck(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Lets a call through only when it carries the daemon's token."""

    def __init__(self, tokens: DaemonToken) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None or self._allowed(details.invocation_metadata):
            return handler
        return _refusing(handler)

    def _allowed(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                got = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(got, self._tokens.expected())
        return False


async def _refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same call shape that refuses; the request stays unparsed bytes."""
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return make(_refuse, response_serializer=handler.response_serializer)
