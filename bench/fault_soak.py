"""Soak: the daemon SIGKILLed at random moments of a 20,000-task Globus run, several runs.

The test suite does this with 3,000 tasks and 3 kills
(tests/test_faults_globus_kill.py); this runs the full size: --tasks through
the daemon's Globus upstream (the fake web service, a private RabbitMQ node,
an endpoint thread that completes every accepted task, duplicates included),
--kills SIGKILLs per run at moments drawn from a seeded random.Random (one
while tasks are still being accepted upstream, the rest mid-stream), the
daemon restarted after each. It counts, from the raw watch stream and the
store, what each run expected, received, lost and duplicated, and whether the
daemon then stopped cleanly (exit 0 on SIGTERM, no traceback in its logs).

Run: .venv/bin/python bench/fault_soak.py [--tasks 20000] [--kills 5] [--runs 3] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client import Client, Executor  # noqa: E402
from fxgate_contract.serialize import deserialize  # noqa: E402
from tests.daemon import DaemonProcess  # noqa: E402
from tests.support.fake_globus import FakeGlobus  # noqa: E402
from tests.support.faults import EventTally, leftover_task_ids, stored_tasks  # noqa: E402
from tests.support.rabbitmq import RabbitNode  # noqa: E402
from tests.test_faults_globus_kill import Endpoint, double, kill_points  # noqa: E402


def one_run(rabbit: RabbitNode, n: int, kills: int, seed: int, tmp: Path) -> dict[str, object]:
    """One run of n tasks with `kills` daemon kills; its counts."""
    points = kill_points(random.Random(seed), n, kills)
    with FakeGlobus(rabbit.url, mode="manual") as fake:
        daemon = DaemonProcess(
            tmp / f"state-{seed}",
            extra_env={
                "FXGATE_GLOBUS_BASE_URL": fake.base_url,
                "FXGATE_GLOBUS_TOKEN": fake.token,
                "FXGATE_GLOBUS_BATCH_INTERVAL_MS": "5",
            },
        )
        daemon.start()
        endpoint = Endpoint(fake, rabbit.url, n)
        endpoint.start()
        began = time.monotonic()
        with Executor(endpoint_id=fake.endpoint_id, address=daemon.address) as ex:
            futures = [ex.submit(double, i) for i in range(n)]
            tally = EventTally(daemon.address, ex.task_group_id)
            for what, count in points:
                if what == "accepted":
                    fake.wait_for(lambda c=count: len(fake.accepted) >= c, timeout=600)
                else:
                    tally.wait_for(count, timeout=600)
                daemon.kill()
                daemon.start()
            tally.wait_for(n, timeout=900)
            seconds = time.monotonic() - began
            tally.close()
            endpoint.stop.set()
            endpoint.join(timeout=60)
            ids = [str(f.task_id) for f in futures]
            group = ex.task_group_id
            wrong = sum(
                1
                for i, t in enumerate(ids)
                if t in tally.data and deserialize(tally.data[t]) != i * 2
            )
            futures_ok = sum(1 for i, f in enumerate(futures) if f.result(timeout=60) == i * 2)
        with Client(address=daemon.address) as c:
            quarantined = int(c.status()["quarantined_messages"])
            upstream_group = c.get_task_group(group)["upstream_task_group_id"]
        rows = stored_tasks(f"sqlite:///{daemon.state_dir / 'gateway.db'}", group)
        code = daemon.stop()
        log = daemon.log()
        stored = Counter(r[0] for r in rows)
        # Left in the group's queue after the run: results of stored tasks
        # (committed, not acknowledged before a kill, then the group finished)
        # and results of first copies of resubmitted batches.
        left = leftover_task_ids(rabbit.url, fake.queue_name(upstream_group))
        stored_upstream = {r[2] for r in rows}
        return {
            "seed": seed,
            "kills": kills,
            "expected": n,
            "received": sum(1 for t in ids if t in tally.events),
            "lost": sum(1 for t in ids if t not in tally.events),
            "duplicated": sum(c - 1 for c in tally.events.values()),
            "wrong": wrong,
            "futures_ok": futures_ok,
            "stored_rows": len(rows),
            "stored_twice": sum(1 for c in stored.values() if c > 1),
            "submitted_upstream": len(fake.accepted),
            "quarantined": quarantined,
            "left_in_queue_stored": len(left & stored_upstream),
            "left_in_queue_first_copies": len(left - stored_upstream),
            "seconds": round(seconds, 1),
            "daemon_survived": code == 0 and "Traceback" not in log,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="first run's seed (default: random)")
    args = parser.parse_args()
    first = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"seeds {first}..{first + args.runs - 1}", flush=True)
    ok = True
    with tempfile.TemporaryDirectory() as tmp, RabbitNode() as rabbit:
        for run in range(args.runs):
            r = one_run(rabbit, args.tasks, args.kills, first + run, Path(tmp))
            print(r, flush=True)
            ok &= (
                r["lost"] == r["duplicated"] == r["wrong"] == r["stored_twice"] == 0
                and r["futures_ok"] == r["expected"] == r["stored_rows"]
                and bool(r["daemon_survived"])
            )
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
