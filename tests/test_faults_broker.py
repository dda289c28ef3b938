"""Broker faults in the middle of a Globus result stream, on a real RabbitMQ.

The fake web service publishes persistent messages to durable queues with
confirms, as the real service does, and retries a publish the broker did not
confirm, so a fault may put a result in the queue twice. Whatever the fault,
each accepted task must reach the client exactly once with its own value, be
stored once, and leave nothing unacknowledged; the daemon must keep serving.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client import Executor
from fxgate_contract.serialize import serialize_data
from tests.daemon import DaemonProcess
from tests.support.fake_globus import FakeGlobus
from tests.support.faults import (  # noqa: F401
    EventTally,
    assert_daemon_survived,
    assert_stored_once,
    daemons,
)
from tests.support.fixtures import fake_globus, fresh_rabbit, rabbit  # noqa: F401
from tests.support.rabbitmq import RabbitNode

N = 1000


def double(x: int) -> int:
    return x * 2


def globus_daemon(
    tmp_path: Path, fake: FakeGlobus, started: list[DaemonProcess], db_url: str = ""
) -> DaemonProcess:
    """A daemon on the fake service; its store is SQLite in its state dir unless db_url."""
    d = DaemonProcess(
        tmp_path / "state",
        extra_env={
            **fake.daemon_env(),
            "FXGATE_DB": db_url or f"sqlite:///{tmp_path / 'state' / 'gateway.db'}",
            # the faults must be ridden out by streaming, not by HTTP polling
            "FXGATE_GLOBUS_BROKER_FALLBACK_S": "600",
        },
    )
    started.append(d)
    d.start()
    return d


@pytest.fixture
def private_fake(fresh_rabbit: RabbitNode) -> Iterator[FakeGlobus]:  # noqa: F811
    with FakeGlobus(fresh_rabbit.url, mode="manual") as fake:
        yield fake


def stream_through(
    daemon: DaemonProcess,
    fake: FakeGlobus,
    rabbit: RabbitNode,  # noqa: F811
    fault: Callable[[EventTally], None],
) -> None:
    """Submit N tasks, publish their results from a thread, inject `fault` mid-stream, check."""
    fake.set_mode("manual")
    with Executor(endpoint_id=fake.endpoint_id, address=daemon.address) as ex:
        futures = [ex.submit(double, i) for i in range(N)]
        accepted = fake.wait_for_tasks(N, timeout=120)
        tally = EventTally(daemon.address, ex.task_group_id)
        data = {a.task_id: serialize_data(i * 2) for i, a in enumerate(accepted)}
        publisher = threading.Thread(
            target=lambda: [fake.publish_result(t, d) for t, d in data.items()], daemon=True
        )
        publisher.start()
        try:
            assert tally.wait_for(N // 4, timeout=120)  # the stream is flowing
            fault(tally)
            publisher.join(timeout=180)
            assert not publisher.is_alive()
            assert tally.wait_for(N, timeout=180), f"{len(tally.events)} of {N} arrived"
            results = [f.result(timeout=60) for f in futures]
        finally:
            tally.close()
    assert tally.duplicates() == {}
    for f, r in zip(futures, results, strict=True):
        assert data[str(f.upstream_task_id)] == serialize_data(r)  # its own value
    assert sorted(results) == [i * 2 for i in range(N)]
    expected = {str(f.task_id): data[str(f.upstream_task_id)] for f in futures}
    assert_stored_once(daemon.extra_env["FXGATE_DB"], ex.task_group_id, expected)
    queue = fake.queue_name(accepted[0].task_group_id)
    assert rabbit.list_queues()[queue] == (0, 0)  # every message acknowledged


def test_broker_killed_mid_stream_then_restarted_every_result_once(
    tmp_path: Path,
    daemons: list[DaemonProcess],  # noqa: F811
    fresh_rabbit: RabbitNode,  # noqa: F811
    private_fake: FakeGlobus,
) -> None:
    daemon = globus_daemon(tmp_path, private_fake, daemons)
    connected_before = daemon.log().count("result broker connected")

    def kill_beam(tally: EventTally) -> None:
        fresh_rabbit.restart_hard()

    stream_through(daemon, private_fake, fresh_rabbit, kill_beam)
    assert daemon.log().count("result broker connected") > connected_before
    assert_daemon_survived(daemon)


def test_connections_closed_by_the_broker_several_times_every_result_once(
    tmp_path: Path,
    daemons: list[DaemonProcess],  # noqa: F811
    fake_globus: FakeGlobus,  # noqa: F811
    rabbit: RabbitNode,  # noqa: F811
) -> None:
    daemon = globus_daemon(tmp_path, fake_globus, daemons)
    closes = 3

    def close_repeatedly(tally: EventTally) -> None:
        for k in range(closes):
            assert tally.wait_for(N // 4 + k * N // 8, timeout=120)
            rabbit.close_all_connections()

    stream_through(daemon, fake_globus, rabbit, close_repeatedly)
    # one connection at start, one more after each forced close
    assert daemon.log().count("result broker connected") >= 1 + closes
    assert_daemon_survived(daemon)


def test_memory_alarm_blocks_the_publisher_and_the_consumer_keeps_its_connection(
    tmp_path: Path,
    daemons: list[DaemonProcess],  # noqa: F811
    fake_globus: FakeGlobus,  # noqa: F811
    rabbit: RabbitNode,  # noqa: F811
) -> None:
    daemon = globus_daemon(tmp_path, fake_globus, daemons)

    def alarm(tally: EventTally) -> None:
        rabbit.set_memory_alarm(True)
        try:
            # The publisher is blocked now; the daemon only consumes and acks,
            # so what was queued before the alarm still drains.
            published = fake_globus.stats()["results_published"]
            assert tally.wait_for(published, timeout=60)
            assert fake_globus.stats()["results_published"] < N  # the publisher is held
            # Only the publishing connection is blocked: the daemon's never
            # publishes, gets no connection.blocked, and pika's
            # blocked_connection_timeout never runs for it.
            assert rabbit.connection_states().count("blocked") == 1  # the fake's
        finally:
            rabbit.set_memory_alarm(False)

    stream_through(daemon, fake_globus, rabbit, alarm)
    log = daemon.log()
    assert log.count("result broker connected") == 1, log  # never mistaken for a dead link
    assert "connection lost" not in log
    assert_daemon_survived(daemon)
