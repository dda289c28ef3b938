"""What the fault tests check after every fault: nothing lost, nothing twice, the daemon alive.

A client's futures hide a duplicate event (a future resolves once and ignores
the rest), so `EventTally` reads the raw watch stream, as any client sees it,
and counts events per task across daemon restarts, resuming after the last
seq it saw like the client library does. The store is read directly with
SQL, so a task stored twice or a second result row cannot hide either.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pika
import pytest
import sqlalchemy as sa

from client import Client
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from tests.daemon import DaemonProcess


class EventTally:
    """Counts terminal events per task id on one group's watch stream (its own thread)."""

    def __init__(self, address: str, group_id: str) -> None:
        self.address = address
        self.group_id = group_id
        self.events: Counter[str] = Counter()  # task id -> terminal events seen
        self.data: dict[str, str] = {}  # task id -> the event's data (last one)
        self.reconnects = 0
        self._after = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._call: Any = None
        self._thread = threading.Thread(target=self._run, name="event-tally", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with grpc.insecure_channel(self.address) as channel:
            stub = pb_grpc.GatewayStub(channel)
            while not self._stop.is_set():
                request = pb.WatchRequest(task_group_id=self.group_id, after_seq=self._after)
                try:
                    self._call = stub.Watch(request, wait_for_ready=True)
                    for message in self._call:
                        self._count(message.events)
                except grpc.RpcError:
                    self.reconnects += 1  # daemon gone: resume after the last seq seen
                    self._stop.wait(0.05)  # retry pause, not a synchronization

    def _count(self, events: Any) -> None:
        with self._cond:
            for e in events:
                self._after = max(self._after, e.seq)
                if e.state >= pb.TASK_STATE_SUCCESS:
                    self.events[e.task_id] += 1
                    self.data[e.task_id] = e.data
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float) -> bool:
        """Block until n distinct tasks had a terminal event (or timeout)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.events) >= n, timeout)

    def duplicates(self) -> dict[str, int]:
        with self._cond:
            return {t: c for t, c in self.events.items() if c > 1}

    def close(self) -> None:
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()
        self._thread.join(timeout=10)


def stored_tasks(db_url: str, group_id: str) -> list[tuple[str, int, str | None, str | None]]:
    """(id, state, upstream id, data) of every stored row of a group, straight from SQL."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, state, upstream_task_id, data FROM tasks WHERE group_id = :g"),
                {"g": group_id},
            ).all()
    finally:
        engine.dispose()
    return [(str(r[0]), int(r[1]), r[2], r[3]) for r in rows]


def assert_stored_once(db_url: str, group_id: str, expected: dict[str, str]) -> None:
    """Each expected task id is stored once, terminal, with exactly the expected data."""
    rows = stored_tasks(db_url, group_id)
    ids = Counter(r[0] for r in rows)
    assert len(rows) == len(expected), (len(rows), len(expected))
    assert set(ids) == set(expected) and max(ids.values()) == 1
    upstream = [r[2] for r in rows if r[2]]
    assert len(upstream) == len(set(upstream)), "an upstream task id stored twice"
    wrong = [r for r in rows if r[1] != pb.TASK_STATE_SUCCESS or r[3] != expected[r[0]]]
    assert not wrong, wrong[:3]


def assert_daemon_survived(daemon: DaemonProcess) -> None:
    """Still serving, exits 0 on SIGTERM, and no traceback for these expected faults."""
    with Client(address=daemon.address) as c:
        assert c.status()["version"]
    code = daemon.stop()
    log = daemon.log()
    assert code == 0, f"{log[-4000:]}\ndaemon exited with {code}"
    assert "Traceback" not in log, log[-4000:]


def wait_for_log(daemon: DaemonProcess, text: str, count: int = 1, timeout: float = 60) -> None:
    """Wait until the daemon's log holds `text` `count` times (it is a file: read it again)."""
    deadline = time.monotonic() + timeout
    while daemon.log().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged {count} times:\n{daemon.log()}"
        time.sleep(0.05)  # re-reading a file that has no change notification


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Daemons a test starts itself; any still running at teardown (a failed test) is killed."""
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.kill()


def leftover_task_ids(url: str, queue: str) -> set[str | None]:
    """The task ids of the messages left in a result queue (read, then returned to it)."""
    from gateway.upstreams.globus.results import decode

    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        ids: set[str | None] = set()
        while True:
            method, props, body = channel.basic_get(queue)
            if method is None:
                return ids
            completion, _ = decode(body, None)
            ids.add(completion.upstream_task_id if completion else None)
    finally:
        conn.close()  # unacked: back in the queue
