"""`fxgate tasks GROUP`: the tasks of one group and their states, to find the ones that failed."""

from __future__ import annotations

import argparse
from typing import Any

from client.client import Client
from fxgate_cli.common import OK, address_of, age, print_json, table

# An error message cut to this many characters in the table (--json has all of it).
MESSAGE_CHARS = 60


def _row(t: dict[str, Any]) -> list[str]:
    message = (t["error_message"] or "").replace("\n", " ")
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    return [
        t["task_id"],
        t["status"],
        age(t["completed_at"]) if t["completed_at"] else "-",
        t["error_code"] or "",
        message,
    ]


def main(args: argparse.Namespace) -> int:
    """List a group's tasks (of one state with --state)."""
    with Client(address=address_of(args)) as client:
        tasks = client.list_tasks(args.group, state=args.state, limit=args.limit)
    if args.json:
        print_json(tasks)
        return OK
    if not tasks:
        print("no tasks" + (f" in state {args.state}" if args.state else ""))
        return OK
    print(table([_row(t) for t in tasks], ["TASK", "STATE", "FINISHED", "ERROR", "MESSAGE"]))
    return OK
