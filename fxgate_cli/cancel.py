"""`fxgate cancel`: stop tasks that have not started, by id or every one of a group."""

from __future__ import annotations

import argparse

from client.client import Client
from fxgate_cli.common import OK, address_of, print_json

# A Cancel call names at most this many ids (the daemon allows 100,000).
CANCEL_BATCH = 10_000
UNFINISHED = ("accepted", "submitted", "running")


def unfinished_tasks(client: Client, group: str) -> list[str]:
    """The ids of a group's tasks that have not finished (the ones a cancel may stop)."""
    return [t["task_id"] for s in UNFINISHED for t in client.list_tasks(group, state=s)]


def cancel(client: Client, task_ids: list[str]) -> list[str]:
    """Cancel tasks in batches; the ids the daemon cancelled."""
    cancelled: list[str] = []
    for start in range(0, len(task_ids), CANCEL_BATCH):
        cancelled += client.cancel(task_ids[start : start + CANCEL_BATCH])
    return cancelled


def main(args: argparse.Namespace) -> int:
    """Cancel and print each task's outcome: cancelled, or already started or finished."""
    with Client(address=address_of(args)) as client:
        asked = unfinished_tasks(client, args.group) if args.group else list(args.tasks)
        cancelled = set(cancel(client, asked)) if asked else set()
    # The daemon names cancelled tasks by fxgate's id; an id asked by its upstream
    # (Globus) spelling is reported as asked only when it is fxgate's.
    outcome = {t: ("cancelled" if t in cancelled else "not cancelled") for t in asked}
    if args.json:
        print_json({"cancelled": sorted(cancelled), "outcomes": outcome})
        return OK
    for task_id, what in outcome.items():
        print(f"{task_id}: {what}")
    for task_id in sorted(cancelled - outcome.keys()):
        print(f"{task_id}: cancelled")
    print(f"{len(cancelled)} of {len(asked)} cancelled; the others had started or finished")
    return OK
