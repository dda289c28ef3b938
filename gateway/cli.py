"""The `fxgate` command: argument parsing and nothing else."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any

from fxgate_contract.address import resolve_address, status_socket_path, unix_path
from fxgate_contract.errors import FxgateError
from fxgate_contract.socket_trust import check_socket, permission_denied
from gateway import __version__
from gateway.errors import GatewayError

STATUS_TIMEOUT_S = 10.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fxgate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fxgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the daemon in the foreground")
    _settings_options(serve)
    config = sub.add_parser(
        "config",
        help="the settings `fxgate serve` would use (same options), where each came from; "
        "secrets masked",
    )
    _settings_options(config)
    config.add_argument("--json", action="store_true", help="machine-readable output")

    status = sub.add_parser("status", help="health and task counts of a running daemon")
    status.add_argument("--address", help="the daemon's address (default as the client resolves)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


SERVE_FLAGS = ("state_dir", "address", "db", "local_workers", "log_level", "log_format")


def _settings_options(cmd: argparse.ArgumentParser) -> None:
    """The options that set the daemon's settings (the highest-precedence source)."""
    cmd.add_argument("--config", type=Path, help="config file (default <state-dir>/config.toml)")
    cmd.add_argument("--state-dir", dest="state_dir", help="where the socket and database live")
    cmd.add_argument(
        "--address", help="unix:///path of the socket to serve, or host:port (TLS and a token)"
    )
    cmd.add_argument("--db", help="SQLAlchemy database URL (default SQLite in the state dir)")
    cmd.add_argument("--local-workers", dest="local_workers", type=int)
    cmd.add_argument("--log-level", dest="log_level")
    cmd.add_argument(
        "--log-format", dest="log_format", choices=("text", "json"), help="default text"
    )


# glibc's mallopt parameter for the most malloc arenas (malloc.h).
M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def _limit_malloc_arenas() -> None:
    """At most two malloc arenas for the daemon's threads (glibc's default: 8 per core).

    Each gRPC and store thread would otherwise grow an arena of its own that
    keeps freed memory; the threads take turns under the GIL anyway. Measured
    in the 20-script benchmark: daemon peak RSS 92-94 -> 88-89 MB. Where the
    C library is not glibc, nothing changes.
    """
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):
        pass


def _serve(args: argparse.Namespace) -> int:
    import logging

    from gateway.config import load
    from gateway.logs import configure
    from gateway.server import serve

    _limit_malloc_arenas()  # before any thread starts

    settings = load(args.config, flags={k: getattr(args, k) for k in SERVE_FLAGS})
    redactor = configure(settings)
    try:
        serve(settings)
    except GatewayError as exc:  # a refusal to start: said once, in the log's own format
        if settings.log_format == "json":
            logging.getLogger("gateway").error("%s", exc)
        else:
            print(f"fxgate: {redactor.redact(str(exc))}", file=sys.stderr)
        return 2
    return 0


def _config(args: argparse.Namespace) -> int:
    from gateway.config import load_explained
    from gateway.config_view import render

    settings, origins = load_explained(
        args.config, flags={k: getattr(args, k) for k in SERVE_FLAGS}
    )
    print(render(settings, origins, args.json))
    return 0


def _read_status(address: str) -> dict[str, Any]:
    """The daemon's status document, from its status socket (no gRPC: see status_socket).

    A TCP daemon has no status socket: there the Status call answers instead.
    """
    path = status_socket_path(address)
    if path is None:
        return _status_over_tcp(address)
    grpc_path = unix_path(address)
    assert grpc_path is not None  # a status socket exists only beside a unix socket
    check_socket(grpc_path)  # the status document is data, but it must not lie either
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(STATUS_TIMEOUT_S)
        try:
            conn.connect(str(path))
        except PermissionError as exc:
            raise permission_denied(grpc_path, exc) from None
        with conn.makefile("rb") as answer:
            document: dict[str, Any] = json.loads(answer.read())
    return document


def _status_over_tcp(address: str) -> dict[str, Any]:
    """The Status call, over TLS with the client's token (FXGATE_AUTH_TOKEN[_FILE])."""
    import grpc

    from fxgate_contract._proto import gateway_pb2 as pb
    from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
    from fxgate_contract.channel import open_channel
    from fxgate_contract.status import status_document

    with open_channel(address) as channel:
        try:
            reply = pb_grpc.GatewayStub(channel).Status(  # type: ignore[no-untyped-call]
                pb.StatusRequest(), timeout=STATUS_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            raise FxgateError(f"{exc.code().name}: {exc.details()}") from None
    return status_document(reply)


def _status(args: argparse.Namespace) -> int:
    address = resolve_address(args.address)
    try:
        st = _read_status(address)
    except (OSError, ValueError) as exc:
        print(
            f"fxgate: no fxgate daemon answers at {address} ({exc}); start one with `fxgate serve`",
            file=sys.stderr,
        )
        return 1
    except FxgateError as exc:  # untrusted or closed socket; over TCP: unreachable or refused
        print(f"fxgate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print(f"fxgate {st['version']}: serving for {st['uptime_s']:.0f} s")
    print(f"  local endpoint: {st['local_endpoint_id']}")
    for name, line in sorted(st["upstream_status"].items()):
        print(f"  upstream {name}: {line}")
    print(f"  open watch streams: {st['watchers']}")
    print(f"  task groups: {st['task_groups']}")
    for state, count in st["tasks"].items():
        print(f"  tasks {state.lower()}: {count}")
    print(f"  quarantined broker messages: {st['quarantined_messages']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "config":
            return _config(args)
        return _status(args)
    except GatewayError as exc:
        print(f"fxgate: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
