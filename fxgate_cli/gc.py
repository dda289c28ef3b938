"""`fxgate gc`: release now the finished groups older than the daemon's retention period.

The daemon does this hourly on its own; run it by hand to free space at once,
or with --dry-run to see what would go.
"""

from __future__ import annotations

import argparse
import datetime

from client.client import Client
from fxgate_cli.common import OK, address_of, print_json


def main(args: argparse.Namespace) -> int:
    """Run (or with --dry-run, preview) the retention sweep and say what it released."""
    with Client(address=address_of(args)) as client:
        report = client.collect_garbage(dry_run=args.dry_run)
    if args.json:
        print_json(report)
        return OK
    cutoff = datetime.datetime.fromtimestamp(report["cutoff"]).isoformat(timespec="seconds")
    groups = report["task_group_ids"]
    verb = "would release" if report["dry_run"] else "released"
    print(
        f"{verb} {len(groups)} finished task groups untouched since {cutoff} "
        f"({report['tasks_released']} tasks)"
    )
    for gid in groups:
        print(f"  {gid}")
    return OK
