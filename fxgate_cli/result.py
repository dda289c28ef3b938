"""`fxgate result TASK`: a task's value, or the traceback it failed with.

The result is loaded here, in this command's process, with the client's
deserializer: the daemon only ever stores the serialized text.
"""

from __future__ import annotations

import argparse
import json
import pprint
import sys
from typing import Any

from client.client import Client
from client.errors import SerdeError, TaskExecutionFailed
from fxgate_cli.common import FAILED, NOT_FINISHED, OK, address_of, print_json


def _jsonable(value: Any) -> Any:
    """The value itself when JSON can carry it, else its repr."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _failure_text(exc: BaseException) -> str:
    if isinstance(exc, TaskExecutionFailed):
        return exc.remote_data.rstrip("\n")
    return f"{type(exc).__name__}: {exc}"


def main(args: argparse.Namespace) -> int:
    """Print the value (exit 0), the failure (exit 1), or that it is not finished (exit 3)."""
    with Client(address=address_of(args)) as client:
        try:
            doc = client.get_task(args.task)
        except TaskExecutionFailed as exc:  # get_task raises a failure, as the SDK's
            doc = {"pending": False, "status": "failed", "exception": exc}
        except SerdeError as exc:  # finished, and its value cannot be loaded here
            doc = {"pending": False, "status": "success", "exception": exc}
    status = doc["status"]
    if args.json:
        out: dict[str, Any] = {"task_id": args.task, "status": status}
        if "result" in doc:
            out["result"] = _jsonable(doc["result"])
        if "exception" in doc:
            out["exception"] = _failure_text(doc["exception"])
        print_json(out)
    elif doc["pending"]:
        print(f"fxgate: task {args.task} has not finished ({status})", file=sys.stderr)
    elif "result" in doc:
        value = doc["result"]
        print(value if isinstance(value, str) else pprint.pformat(value))
    elif "exception" in doc:
        print(_failure_text(doc["exception"]), file=sys.stderr)
    else:
        print(f"fxgate: task {args.task} was {status}", file=sys.stderr)
    if doc["pending"]:
        return NOT_FINISHED
    return OK if "result" in doc else FAILED
