"""Who may call a daemon that listens on TCP: TLS for the channel, a bearer token per call.

On a unix socket the file mode (0600) decides who may connect, so no check
runs there. A TCP port is open to the network, so the daemon refuses to
serve one without a certificate and a token, and every call must carry
``authorization: Bearer <token>`` (what ``grpc.access_token_call_credentials``
sends). A call without the token is refused before its request is even
parsed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from gateway.config import Settings
from gateway.errors import ConfigError

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


def auth_token(settings: Settings) -> str:
    """The token TCP callers must present, from the setting or its file."""
    token = settings.auth_token
    if not token and settings.auth_token_file:
        token = _read("auth_token_file", settings.auth_token_file).decode().strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"address {settings.resolved_address} is TCP: set 'auth_token' or 'auth_token_file' "
            f"to a token of at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"
        )
    return token


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


class BearerTokenCheck(grpc.ServerInterceptor):  # type: ignore[misc]
    """Lets a call through only when it carries the daemon's token."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or self._allowed(details.invocation_metadata):
            return handler
        return _refusing(handler)

    def _allowed(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                got = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(got, self._expected)
        return False


def _refuse(_request: Any, context: grpc.ServicerContext) -> Any:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same call shape that refuses; the request stays unparsed bytes."""
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return make(_refuse, response_serializer=handler.response_serializer)
