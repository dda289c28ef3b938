"""What a client presents to a daemon it reaches over TCP: TLS trust and the daemon's token.

A unix socket needs neither (its file mode decides who may connect). Over TCP
the daemon refuses every call without its token, so a client that has none
fails at once with a message saying which variable to set, rather than after
a round trip.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import grpc

from fxgate_contract.errors import FxgateError


def read_token_file(path: str) -> str:
    """The token in a file (surrounding whitespace dropped): the daemon's and a client's rule.

    Raises OSError or UnicodeDecodeError; each side words the error for its own setting.
    """
    return Path(path).expanduser().read_bytes().decode().strip()


def _read(variable: str, path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise FxgateError(f"{variable}: cannot read {path}: {exc.strerror}") from None


def tcp_credentials(address: str, env: Mapping[str, str] = os.environ) -> grpc.ChannelCredentials:
    """TLS (trusting FXGATE_TLS_CA_FILE, else the system's roots) plus the bearer token."""
    token = env.get("FXGATE_AUTH_TOKEN", "")
    if not token and env.get("FXGATE_AUTH_TOKEN_FILE"):
        path = env["FXGATE_AUTH_TOKEN_FILE"]
        try:
            token = read_token_file(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise FxgateError(f"FXGATE_AUTH_TOKEN_FILE: cannot read {path}: {exc}") from None
    if not token:
        raise FxgateError(
            f"address {address} is TCP: set FXGATE_AUTH_TOKEN or FXGATE_AUTH_TOKEN_FILE to the "
            "daemon's auth token (and FXGATE_TLS_CA_FILE if its certificate is self-signed)"
        )
    ca_file = env.get("FXGATE_TLS_CA_FILE")
    roots = _read("FXGATE_TLS_CA_FILE", ca_file) if ca_file else None
    return grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=roots),
        grpc.access_token_call_credentials(token),
    )
