"""The `fxgate` command: argument parsing, the daemon (serve) and its health (status).

The commands that look at a user's work live in fxgate_cli, one module each.
"""

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


DESCRIPTION = """\
fxgate runs Python functions on Globus Compute endpoints, or on local workers,
through one resident daemon that keeps every task and result until you release
them. Start the daemon once with `fxgate serve`; scripts submit with
fxgate's Executor or Client, and these commands show what became of it.
"""

EPILOG = """\
examples:
  fxgate serve                       run the daemon (in the foreground)
  fxgate status                      is it up, and how many tasks does it hold
  fxgate groups                      your task groups, newest first
  fxgate watch GROUP                 a live progress bar until GROUP completes
  fxgate tasks GROUP --state failed  the tasks of GROUP that failed
  fxgate result TASK                 a task's value, or the traceback it failed with
  fxgate cancel --group GROUP        cancel GROUP's tasks that have not started
  fxgate release GROUP               forget GROUP and its results
  fxgate gc --dry-run                what the retention sweep would release now

Every command but serve takes --json, --address and --state-dir.
Exit codes: 0 ok; 1 the work failed (a task, a group) or no daemon answers;
2 a mistake in the request (bad arguments, an unknown id); 3 `result` of a task
that has not finished.
"""

GROUP_HELP = "a task group id (fxgate's or the Globus one)"

# Commands whose logic lives in fxgate_cli.<name> (a client of the daemon: see its docstring).
USER_COMMANDS = ("groups", "tasks", "result", "watch", "cancel", "release", "gc")


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    example: str,
) -> argparse.ArgumentParser:
    """A subcommand that finds the daemon as the client does and can answer in JSON."""
    parser = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--address", help="the daemon's address (default: $FXGATE_ADDRESS, else the state dir's)"
    )
    parser.add_argument(
        "--state-dir", dest="state_dir", help="talk to the daemon serving this state dir"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _user_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    groups = _command(
        sub,
        "groups",
        "your task groups, newest first",
        "List the task groups the daemon holds, newest first: id, label, endpoint, age and\n"
        "tasks by state. This is how to find a task group id you lost.",
        "fxgate groups --limit 5",
    )
    groups.add_argument("--limit", type=int, help="only the newest LIMIT groups")

    tasks = _command(
        sub,
        "tasks",
        "the tasks of a group and their states",
        "List the tasks of one group by task id, with state, finish time and error.",
        "fxgate tasks 7d1e... --state failed",
    )
    tasks.add_argument("group", metavar="GROUP", help=GROUP_HELP)
    tasks.add_argument(
        "--state",
        help="only tasks in this state: accepted, submitted, success, failed, cancelled",
    )
    tasks.add_argument("--limit", type=int, help="at most LIMIT tasks")

    result = _command(
        sub,
        "result",
        "a task's value, or the traceback it failed with",
        "Print a finished task's value (exit 0), or the remote traceback of a failed task\n"
        "on stderr (exit 1); a task not finished yet exits 3. The result is loaded in this\n"
        "command's process, never in the daemon.",
        "fxgate result 0b7e... --json",
    )
    result.add_argument("task", metavar="TASK", help="a task id (fxgate's or the Globus one)")

    watch = _command(
        sub,
        "watch",
        "a live progress bar until a group completes",
        "Follow a task group until all its tasks finished: done, failed, running, pending,\n"
        "rate and ETA. A progress bar in a terminal, a plain line every few seconds\n"
        "otherwise. Exits 0 if every task succeeded, 1 if any failed or was cancelled.",
        "fxgate watch 7d1e...",
    )
    watch.add_argument("group", metavar="GROUP", help=GROUP_HELP)
    watch.add_argument("--plain", action="store_true", help="plain lines even in a terminal")

    cancel = _command(
        sub,
        "cancel",
        "cancel tasks that have not started",
        "Cancel tasks that have not started yet, named one by one or a whole group's.\n"
        "Tasks already running or finished are left as they are.",
        "fxgate cancel --group 7d1e...",
    )
    which = cancel.add_mutually_exclusive_group(required=True)
    which.add_argument("tasks", nargs="*", default=[], help="task ids", metavar="TASK")
    which.add_argument("--group", help="every unfinished task of this group")

    release = _command(
        sub,
        "release",
        "forget a group and its stored results",
        "Delete a task group and every result stored for it from the daemon.",
        "fxgate release 7d1e... --cancel",
    )
    release.add_argument("group", metavar="GROUP", help=GROUP_HELP)
    release.add_argument(
        "--cancel", action="store_true", help="cancel its tasks that have not started first"
    )

    gc = _command(
        sub,
        "gc",
        "release finished groups older than the retention period now",
        "Run the daemon's retention sweep now (it runs hourly on its own): release the\n"
        "finished task groups untouched for retention_days. --dry-run only lists them.",
        "fxgate gc --dry-run",
    )
    gc.add_argument("--dry-run", dest="dry_run", action="store_true", help="release nothing")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fxgate",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fxgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the daemon in the foreground",
        description="Run the fxgate daemon in the foreground until SIGTERM or Ctrl-C.",
        epilog="example:\n  fxgate serve --local-workers 4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _settings_options(serve)
    config = sub.add_parser(
        "config",
        help="the settings `fxgate serve` would use, and where each came from",
        description="The settings `fxgate serve` would use with the same options, each with\n"
        "where it came from (default, config file, environment, command line); secrets masked.",
        epilog="example:\n  fxgate config --state-dir /var/lib/fxgate --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _settings_options(config)
    config.add_argument("--json", action="store_true", help="machine-readable output")

    status = sub.add_parser(
        "status",
        help="health and task counts of a running daemon",
        description="Whether the daemon answers, its upstreams, and its tasks counted by state.",
        epilog="example:\n  fxgate status --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--address", help="the daemon's address (default as the client resolves)")
    status.add_argument(
        "--state-dir", dest="state_dir", help="talk to the daemon serving this state dir"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    _user_commands(sub)
    return parser


SERVE_FLAGS = (
    "state_dir",
    "address",
    "db",
    "local_workers",
    "log_level",
    "log_format",
    "metrics_port",
)


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
    cmd.add_argument(
        "--metrics-port",
        dest="metrics_port",
        type=int,
        help="serve Prometheus metrics over HTTP on this port of 127.0.0.1 (default: off)",
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
    if args.address or not args.state_dir:
        address = resolve_address(args.address)
    else:
        address = resolve_address(None, {"FXGATE_STATE_DIR": args.state_dir})
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


def _user_command(args: argparse.Namespace) -> int:
    """A command of fxgate_cli, imported only now: the daemon never loads those modules."""
    import importlib

    from fxgate_cli.common import run

    module = importlib.import_module(f"fxgate_cli.{args.command}")
    return run(module.main, args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "status":
            return _status(args)
        if args.command == "config":
            return _config(args)
        return _user_command(args)
    except GatewayError as exc:
        print(f"fxgate: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
