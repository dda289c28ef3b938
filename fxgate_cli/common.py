"""What every command shares: finding the daemon, printing, and one line plus an exit code
for every mistake, so a person never sees a traceback for a wrong id or a stopped daemon."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from client.errors import FxgateError, RequestRefused
from fxgate_contract.address import resolve_address

# Exit codes, the same for every command (README, "Seeing your work").
OK = 0
FAILED = 1  # the work failed (a task, a group), or no daemon answered
MISTAKE = 2  # the request is wrong: bad arguments, an unknown id (argparse uses 2 too)
NOT_FINISHED = 3  # `fxgate result` of a task that has not finished
INTERRUPTED = 130

# Refusals that mean the request itself is wrong, not the daemon or the work.
MISTAKE_CODES = frozenset({"INVALID_ARGUMENT", "NOT_FOUND"})


def address_of(args: argparse.Namespace) -> str:
    """--address, else the socket in --state-dir, else what the client library resolves."""
    if getattr(args, "address", None):
        return resolve_address(args.address)
    if getattr(args, "state_dir", None):
        return resolve_address(None, {"FXGATE_STATE_DIR": args.state_dir})
    return resolve_address(None)


def fail(message: str, code: int) -> int:
    """Say what went wrong in one line on stderr; the exit code."""
    print(f"fxgate: {message}", file=sys.stderr)
    return code


def run(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; a refusal, an absent daemon or a bad value is one line and a code."""
    try:
        return command(args)
    except RequestRefused as exc:
        return fail(exc.message, MISTAKE if exc.code in MISTAKE_CODES else FAILED)
    except FxgateError as exc:  # no daemon, a socket not trusted or closed to us
        return fail(str(exc), FAILED)
    except ValueError as exc:  # a value the command itself refused (e.g. a state name)
        return fail(str(exc), MISTAKE)
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # `fxgate groups | head`: the reader left
        return OK


def print_json(document: Any) -> None:
    """A document on stdout, for programs (`--json`)."""
    print(json.dumps(document, indent=2, default=repr))


def age(epoch: float | None, now: float | None = None) -> str:
    """How long ago, for people: "42s", "5m", "3h", "2d"; "-" when unknown."""
    if not epoch:
        return "-"
    seconds = max(0.0, (now or time.time()) - epoch)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def table(rows: list[list[str]], header: list[str]) -> str:
    """Columns aligned by padding, as `ps` or `docker ps` print them."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    head = "  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True))
    return "\n".join(line.rstrip() for line in [head, *lines])
