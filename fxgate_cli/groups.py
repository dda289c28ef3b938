"""`fxgate groups`: your task groups, newest first, to find a lost group id again."""

from __future__ import annotations

import argparse
from typing import Any

from client.client import Client
from fxgate_cli.common import OK, address_of, age, print_json, table


def _row(g: dict[str, Any]) -> list[str]:
    t = g["tasks"]
    running = t["submitted"] + t["running"]
    return [
        g["task_group_id"],
        g["label"] or "-",
        "local" if g["upstream"] == "local" else g["endpoint_id"],
        age(g["created_at"]),
        str(t["success"]),
        str(t["failed"] + t["cancelled"]),
        str(running),
        str(t["accepted"]),
        str(g["total"]),
    ]


def main(args: argparse.Namespace) -> int:
    """List groups: a table for people, every field with --json."""
    with Client(address=address_of(args)) as client:
        groups = client.list_task_groups(limit=args.limit)
    if args.json:
        print_json(groups)
        return OK
    if not groups:
        print("no task groups")
        return OK
    header = ["GROUP", "LABEL", "ENDPOINT", "AGE", "DONE", "FAILED", "RUNNING", "PENDING", "TOTAL"]
    print(table([_row(g) for g in groups], header))
    return OK
