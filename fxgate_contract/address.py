"""Where the daemon listens: the address rules shared by the daemon, clients and `fxgate status`.

Kept free of gRPC so that commands which only need a path (the status check)
start without loading it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# Read by clients only; the daemon, which shares the FXGATE_ prefix, ignores them.
CLIENT_ONLY_ENV = frozenset({"FXGATE_TLS_CA_FILE"})


def unix_path(address: str) -> Path | None:
    """The socket path of a unix address (unix:///abs or unix:path); None for TCP.

    Any other address is TCP, which the daemon serves only with TLS and a token.
    """
    if address.startswith("unix://"):
        return Path(address.removeprefix("unix://"))
    if address.startswith("unix:"):
        return Path(address.removeprefix("unix:"))
    return None


def default_state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """$FXGATE_STATE_DIR, else $XDG_STATE_HOME/fxgate, else ~/.local/state/fxgate."""
    if env.get("FXGATE_STATE_DIR"):
        return Path(env["FXGATE_STATE_DIR"])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "fxgate"
    return Path.home() / ".local" / "state" / "fxgate"


def resolve_address(address: str | None = None, env: Mapping[str, str] = os.environ) -> str:
    """The explicit address, else $FXGATE_ADDRESS, else the socket in the state dir."""
    addr = address or env.get("FXGATE_ADDRESS") or ""
    if not addr:
        return f"unix://{default_state_dir(env) / 'gateway.sock'}"
    if addr.startswith("/"):
        return f"unix://{addr}"
    return addr


def status_socket_path(address: str) -> Path | None:
    """The plain status socket beside a unix gRPC socket (none for other addresses)."""
    path = unix_path(address)
    if path is None:
        return None
    return path.with_name(path.name + ".status")
