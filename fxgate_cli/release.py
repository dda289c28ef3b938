"""`fxgate release GROUP`: forget a group and its stored results, freeing the daemon's store."""

from __future__ import annotations

import argparse

from client.client import Client
from fxgate_cli.cancel import cancel, unfinished_tasks
from fxgate_cli.common import OK, address_of, print_json


def main(args: argparse.Namespace) -> int:
    """Release a group; with --cancel, its tasks that have not started are cancelled first."""
    cancelled: list[str] = []
    with Client(address=address_of(args)) as client:
        if args.cancel:
            # Cancelled here as `fxgate cancel --group` does, and the daemon is asked
            # to cancel what is left (cancel_unfinished) as it releases.
            cancelled = cancel(client, unfinished_tasks(client, args.group))
        released = client.release_task_group(args.group, cancel_unfinished=args.cancel)
    if args.json:
        print_json(
            {"task_group_id": args.group, "tasks_released": released, "cancelled": cancelled}
        )
        return OK
    if args.cancel:
        print(f"cancelled {len(cancelled)} tasks that had not started")
    print(f"released task group {args.group}: {released} tasks")
    return OK
