"""Task states and controls through a real daemon: RUNNING, cancel, release, no daemon.

Tasks say they started by writing to a fifo the test reads (an event, not a
sleep), and hold on a file lock the test owns until it lets them finish.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import logging
import os
import re
import select
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from client import Client, Executor
from client.errors import RequestRefused
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from fxgate_contract.serialize import pack_function, pack_payload
from fxgate_contract.states import CancelOutcome, TaskState
from gateway.config import Settings
from gateway.core import Gateway
from gateway.errors import Conflict
from gateway.store.database import Store
from gateway.store.records import Completion, GroupInfo, NewTask
from tests.daemon import DaemonProcess
from tests.support.inprocess import RecordingUpstream


def held(x: int, gate: str, started: str, runs: str) -> int:
    """Counts its run in runs, says "started <pid>" down the fifo, then waits for the gate."""
    with open(runs, "a") as f:
        f.write(f"{os.getpid()}\n")
    with open(started, "w") as f:
        f.write(f"started {os.getpid()}\n")
    with open(gate) as f:
        fcntl.flock(f, fcntl.LOCK_SH)
    return x


def identity(x: int) -> int:
    return x


class Scene:
    """A gate the test holds shut, and a fifo on which tasks say they started."""

    def __init__(self, tmp_path: Path) -> None:
        self.gate, self.started, self.runs = (tmp_path / n for n in ("gate", "started", "runs"))
        self.gate.touch()
        self.runs.touch()
        os.mkfifo(self.started)
        # read and write end: opening it never blocks a task; readline() awaits one
        self.lines = open(os.open(self.started, os.O_RDWR))  # noqa: SIM115 - closed by close()
        self.held = open(self.gate, "w")  # noqa: SIM115 - closed by open_gate()
        fcntl.flock(self.held, fcntl.LOCK_EX)

    def args(self, x: int) -> tuple[int, str, str, str]:
        return (x, str(self.gate), str(self.started), str(self.runs))

    def wait_started(self) -> int:
        """The pid of the next task that started (blocks until one did)."""
        return int(self.lines.readline().split()[1])

    def open_gate(self) -> None:
        if not self.held.closed:
            self.held.close()

    def close(self) -> None:
        self.open_gate()
        self.lines.close()


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    s = Scene(tmp_path)
    yield s
    s.close()


def running_event(address: str, group: str, task_id: str) -> pb.TaskEvent:
    """Wait on a watch stream of the group for the task's RUNNING event."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GatewayStub(channel)  # type: ignore[no-untyped-call]
        for message in stub.Watch(pb.WatchRequest(task_group_id=group), timeout=60):
            for event in message.events:
                if event.task_id == task_id and event.state == pb.TASK_STATE_RUNNING:
                    return event
    raise AssertionError("the stream ended without a RUNNING event")


def until(condition: Any, what: str, timeout: float = 30) -> None:
    """Poll a condition nothing can await (a future's running flag), with a bound."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def process_ends(pid: int) -> bool:
    """Whether the process ends within 30 s (a pidfd wakes when it does)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(30_000))
    finally:
        os.close(pidfd)


@pytest.mark.timeout(120)
def test_a_running_task_is_running_until_its_result(
    daemon: DaemonProcess, client: Client, scene: Scene
) -> None:
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        fut = ex.submit(held, *scene.args(7))
        scene.wait_started()
        until(lambda: fut.task_id is not None, "the task id")
        assert fut.task_id is not None
        event = running_event(daemon.address, ex.task_group_id, fut.task_id)
        assert event.seq == 0 and not event.data  # it finishes nothing
        assert client.get_task(fut.task_id)["status"] == "running"
        assert client.status()["tasks"].get("RUNNING") == 1
        until(fut.running, "future.running()")
        assert not fut.cancel()  # started: concurrent.futures' cancel() refuses
        scene.open_gate()
        assert fut.result(timeout=60) == 7
    doc = client.get_task(fut.task_id)
    assert doc["status"] == "success" and doc["result"] == 7
    assert "RUNNING" not in client.status()["tasks"]


@pytest.mark.timeout(120)
def test_a_pending_task_is_withdrawn_by_future_cancel(
    daemon: DaemonProcess, client: Client, scene: Scene
) -> None:
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        busy = [ex.submit(held, *scene.args(i)) for i in range(2)]  # both workers
        scene.wait_started()
        scene.wait_started()
        waiting = ex.submit(identity, 3)
        until(lambda: waiting.task_id is not None, "the task id")
        called = threading.Event()
        waiting.add_done_callback(lambda _: called.set())
        assert waiting.cancel()
        assert waiting.cancelled() and called.is_set()
        with pytest.raises(concurrent.futures.CancelledError):
            waiting.result(timeout=0)
        assert waiting.task_id is not None
        assert client.get_task(waiting.task_id)["status"] == "cancelled"
        assert waiting.cancel()  # again: still cancelled
        scene.open_gate()
        assert [f.result(timeout=60) for f in busy] == [0, 1]


@pytest.mark.timeout(180)
def test_cancel_stops_a_running_local_task_for_good(
    daemon: DaemonProcess, client: Client, scene: Scene
) -> None:
    ex = Executor(endpoint_id="local", address=daemon.address)
    try:
        fut = ex.submit(held, *scene.args(1))
        pid = scene.wait_started()
        until(lambda: fut.task_id is not None, "the task id")
        task_id = fut.task_id
        assert task_id is not None
        (outcome,) = client.cancel_outcomes([task_id])
        assert outcome["outcome"] == "cancelled" and outcome["was_running"], outcome
        assert process_ends(pid), f"worker pid {pid} still runs the cancelled task"
        with pytest.raises(concurrent.futures.CancelledError):
            fut.result(timeout=60)
        # the pool replaced the worker: two tasks still run side by side
        others = [ex.submit(held, *scene.args(i)) for i in (10, 11)]
        assert {scene.wait_started(), scene.wait_started()}.isdisjoint({pid})
        scene.open_gate()
        assert [f.result(timeout=60) for f in others] == [10, 11]
        again = client.cancel_outcomes([task_id])
        assert again[0]["outcome"] == "already_finished"
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    daemon.kill()
    daemon.start()
    with Client(address=daemon.address) as after:
        assert after.get_task(task_id)["status"] == "cancelled"
        with Executor(endpoint_id="local", address=daemon.address) as ex2:
            assert ex2.submit(identity, 5).result(timeout=60) == 5  # the pool ran after restart
        assert "RUNNING" not in after.status()["tasks"]
    assert len(scene.runs.read_text().splitlines()) == 3  # the cancelled one ran once


def at_workers(client: Client) -> tuple[int, int]:
    """(tasks at the local workers, tasks queued), from the pool's status line."""
    line = client.status()["upstream_status"]["local"]
    match = re.search(r"(\d+) tasks at workers, (\d+) queued", line)
    assert match, line
    return int(match.group(1)), int(match.group(2))


@pytest.mark.timeout(180)
def test_tasks_waiting_at_a_stopped_worker_run_on_another(
    daemon: DaemonProcess, client: Client, scene: Scene
) -> None:
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        trivial = [ex.submit(identity, i) for i in range(200)]  # the pool now batches deeply
        assert [f.result(timeout=60) for f in trivial] == list(range(200))
    batch = client.create_batch()
    batch.add(client.register_function(held), "local", scene.args(-1))
    fid = client.register_function(identity)
    for i in range(9):
        batch.add(fid, "local", (i,))
    ids = client.batch_run(batch)  # one Submit: the first worker gets held and some behind it
    scene.wait_started()
    until(lambda: at_workers(client)[1] == 0 and at_workers(client)[0] >= 2, "the other worker")
    behind = at_workers(client)[0] - 1
    assert behind >= 1 and sum(client.get_task(t)["pending"] for t in ids[1:]) == behind
    assert client.cancel([ids[0]]) == [ids[0]]
    group = client.session_task_group_id
    with Executor(endpoint_id="local", task_group_id=group, address=daemon.address) as ex:
        futures = {f.task_id: f for f in ex.reload_tasks()}
        assert [futures[t].result(timeout=60) for t in ids[1:]] == list(range(9))
        assert futures[ids[0]].cancelled()


@pytest.mark.timeout(120)
def test_release_of_a_group_with_unfinished_tasks_is_refused_with_how_to_proceed(
    daemon: DaemonProcess, client: Client, scene: Scene
) -> None:
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        fut = ex.submit(held, *scene.args(1))
        scene.wait_started()
        until(lambda: fut.task_id is not None, "the task id")
        with pytest.raises(RequestRefused) as refused:
            client.release_task_group(ex.task_group_id)
        assert refused.value.code == "FAILED_PRECONDITION"
        message = str(refused.value)
        assert "1 unfinished tasks" in message and str(fut.task_id) in message
        assert "cancel_unfinished" in message
        scene.open_gate()
        assert fut.result(timeout=60) == 1
    assert client.release_task_group(ex.task_group_id) == 1


@pytest.mark.timeout(120)
def test_release_with_cancel_resolves_every_future_and_shutdown_returns(
    daemon: DaemonProcess, client: Client, scene: Scene
) -> None:
    ex = Executor(endpoint_id="local", address=daemon.address)
    running = [ex.submit(held, *scene.args(i)) for i in range(2)]
    pids = [scene.wait_started(), scene.wait_started()]
    queued = [ex.submit(identity, i) for i in range(5)]
    until(lambda: all(f.task_id for f in running + queued), "the task ids")
    assert client.release_task_group(ex.task_group_id, cancel_unfinished=True) == 7
    done, pending = concurrent.futures.wait(running + queued, timeout=60)
    assert not pending
    assert all(f.cancelled() for f in running + queued)
    assert all(process_ends(pid) for pid in pids)
    stopper = threading.Thread(target=ex.shutdown, kwargs={"wait": True})
    stopper.start()
    stopper.join(60)
    assert not stopper.is_alive(), "Executor.shutdown(wait=True) hangs on a released group"
    with pytest.raises(RequestRefused, match="unknown task group"):
        client.get_task_group(ex.task_group_id)


class Warnings(logging.Handler):
    """Keeps WARNING records of the client's connection module; an event on the first."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.first = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.first.set()


@pytest.mark.timeout(120)
def test_an_executor_without_a_daemon_says_so_at_once_then_waits_for_one(
    tmp_path: Path,
) -> None:
    later = DaemonProcess(tmp_path / "state")
    later.state_dir.mkdir(mode=0o700)
    handler = Warnings()
    logger = logging.getLogger("client.connection")
    logger.addHandler(handler)
    try:
        with Executor(endpoint_id="local", address=later.address) as ex:
            futures = [ex.submit(identity, i) for i in range(3)]
            assert handler.first.wait(1.0), "nothing said within a second"
            (record,) = handler.records
            text = record.getMessage()
            assert f"no fxgate daemon answers at {later.address}" in text
            for hint in ("fxgate serve", "FXGATE_ADDRESS", "FXGATE_STATE_DIR"):
                assert hint in text
            later.start()  # started later, it still picks the script up
            assert [f.result(timeout=60) for f in futures] == [0, 1, 2]
        assert len(handler.records) == 1  # said once, at WARNING
    finally:
        logger.removeHandler(handler)
        later.stop()


class HandedOver(RecordingUpstream):
    """An upstream that handed every task to its service at once: it can withdraw none."""

    def cancel(self, task_ids: Any) -> set[str]:
        return set()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    settings = Settings(state_dir=tmp_path, db=f"sqlite:///{tmp_path / 'gateway.db'}")
    gw = Gateway(settings, Store(settings.db), {"globus": HandedOver("globus")})
    gw.start()
    yield gw
    gw.stop()


def test_a_task_its_upstream_cannot_stop_is_reported_and_given_up_only_on_release(
    gateway: Gateway,
) -> None:
    fid = gateway.register_function("identity", pack_function(identity))
    endpoint = "4b116d3c-1703-4f8f-9f6f-39921e5864df"
    tasks = [NewTask(fid, pack_payload((i,), {})) for i in range(3)]
    group, ids = gateway.submit("", endpoint, tasks, "", []).result()
    gateway.submitted(group, {t: str(uuid.uuid4()) for t in ids}).result()
    results = gateway.cancel_tasks(ids[:2])
    assert [r.outcome for r in results] == [CancelOutcome.RUNNING_CANNOT_STOP] * 2
    assert "Globus Compute web service has no cancel" in results[0].message
    assert gateway.cancel(ids) == []  # cancelled_task_ids: none
    with pytest.raises(Conflict, match=f"3 unfinished tasks .*{ids[0]}"):
        gateway.release(group)
    assert gateway.release_group(group, cancel_unfinished=True) == (3, 3)
    assert gateway.store.state_counts().get(TaskState.SUBMITTED, 0) == 0


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").new_database()
    else:
        url = f"sqlite:///{tmp_path / 'gateway.db'}"
    s = Store(url)
    s.open()
    yield s
    s.close()


def test_running_never_overwrites_a_finished_task_and_is_forgotten_at_start(store: Store) -> None:
    g = GroupInfo(str(uuid.uuid4()), "local", str(uuid.uuid4()), None)
    ids = store.accept(g, [NewTask("f", "p")] * 4, str(uuid.uuid4()), []).result()
    store.complete([Completion(TaskState.SUCCESS, "00\nx", task_id=ids[0])]).result()
    assert store.mark_running(dict.fromkeys(ids[:3], g.id)).result() == 2  # finished stays
    store.complete([Completion(TaskState.CANCELLED, "", task_id=ids[1])]).result()
    assert store.mark_running({ids[1]: g.id}).result() == 0  # a late write changes nothing
    states = {e.task_id: e.state for e in store.tasks(ids)}
    assert [states[t] for t in ids] == [
        TaskState.SUCCESS,
        TaskState.CANCELLED,
        TaskState.RUNNING,
        TaskState.ACCEPTED,
    ]
    assert [e.task_id for e in store.running_events(g.id, "", 10)] == [ids[2]]
    assert store.unfinished_ids(g.id, limit=1) == (2, [min(ids[2:])])
    counts = store.state_counts()
    assert counts[TaskState.RUNNING] == 1 and counts[TaskState.ACCEPTED] == 1
    with pytest.raises(Conflict, match="2 unfinished tasks"):
        store.release(g.id, require_finished=True).result()
    assert store.reset_running("globus").result() == 0  # another upstream's groups only
    assert store.reset_running("local").result() == 1
    assert store.tasks([ids[2]])[0].state == TaskState.ACCEPTED
    assert TaskState.RUNNING not in store.state_counts()
    assert store.state_counts()[TaskState.ACCEPTED] == 2
