"""Soak: a long broker outage in the middle of a 10,000-result stream.

The test suite restarts the broker mid-stream with 2,000 results; this runs
the issue-sized version: 10,000 tasks through the daemon's Globus upstream
(the fake web service in manual mode), half the results published, the broker
stopped for --outage seconds (60 by default), the rest published after it
returns. It checks that every future of the live client completes, exactly
once and correctly, and that nothing stays unacknowledged in the queue.

Run: .venv/bin/python bench/soak_broker_outage.py [--tasks 10000] [--outage 60]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import tempfile
import time
from pathlib import Path

import pika

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client import Executor  # noqa: E402
from fxgate_contract.serialize import serialize_data  # noqa: E402
from tests.daemon import DaemonProcess  # noqa: E402
from tests.support.fake_globus import FakeGlobus, result_body  # noqa: E402
from tests.support.rabbitmq import RabbitNode  # noqa: E402


def double(x: int) -> int:
    return x * 2


def publish(url: str, queue: str, items: list[tuple[str, int]]) -> None:
    """Publish persistent Result messages on one channel, one confirm at the end."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    for task_id, value in items:
        channel.basic_publish("", queue, result_body(task_id, serialize_data(value)), props)
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--outage", type=float, default=60.0)
    args = parser.parse_args()
    n = args.tasks
    with tempfile.TemporaryDirectory() as tmp, RabbitNode() as rabbit:
        with FakeGlobus(rabbit.url, mode="manual") as fake:
            daemon = DaemonProcess(
                Path(tmp) / "state",
                extra_env={
                    "FXGATE_GLOBUS_BASE_URL": fake.base_url,
                    "FXGATE_GLOBUS_TOKEN": fake.token,
                    # the outage must be survived by streaming, not by polling
                    "FXGATE_GLOBUS_BROKER_FALLBACK_S": str(args.outage * 10),
                },
            )
            daemon.start()
            try:
                with Executor(endpoint_id=fake.endpoint_id, address=daemon.address) as ex:
                    futures = [ex.submit(double, i) for i in range(n)]
                    accepted = fake.wait_for_tasks(n, timeout=300)
                    queue = fake.queue_name(accepted[0].task_group_id)
                    values = {a.task_id: i * 2 for i, a in enumerate(accepted)}
                    items = [(a.task_id, values[a.task_id]) for a in accepted]
                    publish(rabbit.url, queue, items[: n // 2])
                    t0 = time.monotonic()
                    rabbit.stop_app()
                    print(f"broker stopped with {sum(f.done() for f in futures)} futures done")
                    time.sleep(args.outage)  # the outage itself, not a synchronization
                    failed = [f for f in futures if f.done() and f.exception() is not None]
                    rabbit.start_app()
                    print(f"broker back after {time.monotonic() - t0:.0f} s")
                    publish(rabbit.url, queue, items[n // 2 :])
                    done, not_done = concurrent.futures.wait(futures, timeout=600)
                    wrong = [f for f in done if f.result() != values[str(f.upstream_task_id)]]
                    ready, unacked = rabbit.list_queues()[queue]
            finally:
                daemon.stop()
    print(f"futures failed during the outage: {len(failed)}")
    print(f"futures done: {len(done)} of {n}; not done: {len(not_done)}; wrong: {len(wrong)}")
    print(f"left in the queue: {ready} ready, {unacked} unacknowledged")
    ok = not failed and not not_done and not wrong and (ready, unacked) == (0, 0)
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
