"""The daemon SIGKILLed at random moments of a Globus run, restarted each time.

The endpoint goes on completing tasks and publishing their results while
the daemon is dead, so kills land in every phase: while batches go out, while a
submit answer is uncommitted, between a commit and its ack. The live client
rides every restart; each task must reach it exactly once with its own value.
The kill moments come from a seeded random.Random; the seed is printed so a
failing run can be replayed with FXTEST_KILL_SEED.
"""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pika

from client import Executor
from fxgate_contract.serialize import deserialize, pack_payload, serialize_data
from tests.daemon import DaemonProcess
from tests.support.fake_globus import FakeGlobus, result_body
from tests.support.faults import (  # noqa: F401
    EventTally,
    assert_daemon_survived,
    assert_stored_once,
    daemons,
)
from tests.support.fixtures import fake_globus, rabbit  # noqa: F401
from tests.support.rabbitmq import RabbitNode

N = 3000
KILLS = 3


def double(x: int) -> int:
    return x * 2


def kill_points(rng: random.Random, n: int, kills: int) -> list[tuple[str, int]]:
    """One kill while tasks are still being accepted upstream, the rest mid-stream."""
    stream = sorted(rng.sample(range(n // 10, n - n // 10), kills - 1))
    return [("accepted", rng.randrange(1, n // 2))] + [("results", k) for k in stream]


class Endpoint(threading.Thread):
    """Completes every task the fake service accepts, in order, while the daemon lives or not.

    The fake's own executor runs about 100 tasks/s here; publishing the known
    answer (double's, read from the payload) straight to the result queue
    keeps the run short. A task the daemon submitted twice (killed before the
    service's answer was committed) is completed twice, as on a real endpoint.
    """

    def __init__(self, fake: FakeGlobus, url: str, n: int) -> None:
        super().__init__(name="test-endpoint", daemon=True)
        self.fake, self.url = fake, url
        self.value = {pack_payload((i,), {}): i * 2 for i in range(n)}
        self.stop = threading.Event()

    def run(self) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        channel = conn.channel()
        props = pika.BasicProperties(delivery_mode=2)
        done = 0
        while not self.stop.is_set():
            if not self.fake.wait_for(lambda d=done: len(self.fake.accepted) > d, timeout=0.5):
                conn.process_data_events(time_limit=0)  # heartbeats while idle
                continue
            for task in self.fake.wait_for_tasks(done + 1)[done:]:
                body = result_body(task.task_id, serialize_data(self.value[task.payload]))
                queue = self.fake.queue_name(task.task_group_id)
                channel.basic_publish("", queue, body, props)
                done += 1
        conn.close()


def run_with_kills(
    daemon: DaemonProcess,
    fake: FakeGlobus,
    rabbit_url: str,
    n: int,
    points: list[tuple[str, int]],
) -> tuple[EventTally, list[object], str]:
    """Submit n tasks, SIGKILL and restart the daemon at each point; the tally and results."""
    fake.set_mode("manual")
    endpoint = Endpoint(fake, rabbit_url, n)
    endpoint.start()
    with Executor(endpoint_id=fake.endpoint_id, address=daemon.address) as ex:
        futures = [ex.submit(double, i) for i in range(n)]
        tally = EventTally(daemon.address, ex.task_group_id)
        try:
            for what, count in points:
                if what == "accepted":
                    assert fake.wait_for(lambda c=count: len(fake.accepted) >= c, timeout=120)
                else:
                    assert tally.wait_for(count, timeout=120), f"{len(tally.events)} < {count}"
                daemon.kill()
                daemon.start()
            assert tally.wait_for(n, timeout=180), f"{len(tally.events)} of {n} arrived"
            results = [f.result(timeout=60) for f in futures]
        finally:
            tally.close()
            endpoint.stop.set()
            endpoint.join(timeout=60)
        ids = [str(f.task_id) for f in futures]
    assert results == [i * 2 for i in range(n)]
    assert {deserialize(tally.data[t]) for t in ids} == set(results)
    assert all(deserialize(tally.data[t]) == i * 2 for i, t in enumerate(ids))
    return tally, results, ex.task_group_id


def test_daemon_killed_at_random_moments_of_a_globus_run_each_result_once(
    tmp_path: Path,
    daemons: list[DaemonProcess],  # noqa: F811
    fake_globus: FakeGlobus,  # noqa: F811
    rabbit: RabbitNode,  # noqa: F811
) -> None:
    seed = int(os.environ.get("FXTEST_KILL_SEED", random.randrange(2**32)))
    print(f"kill seed {seed}")
    points = kill_points(random.Random(seed), N, KILLS)
    daemon = DaemonProcess(
        tmp_path / "state",
        extra_env=fake_globus.daemon_env(),
    )
    daemons.append(daemon)
    daemon.start()
    tally, _, group = run_with_kills(daemon, fake_globus, rabbit.url, N, points)
    assert tally.duplicates() == {}, f"seed {seed}"
    assert tally.reconnects >= KILLS
    db_url = f"sqlite:///{daemon.state_dir / 'gateway.db'}"
    assert_stored_once(db_url, group, tally.data)
    assert_daemon_survived(daemon)
