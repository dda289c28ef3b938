"""client/watcher.py's GroupWatcher against the real server, core and store, in this process.

The test decides when results are committed (Gateway.complete, as an
upstream's sink does) and when the server stops, so each promise of the
watcher is reached on purpose: futures resolve with their results, what was
committed before the watch began is replayed, a stream that ends or a
server that goes away costs a reconnect and never a future, a refusal fails
the futures, and stop/join end its thread.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client.connection import Connection
from client.errors import RequestRefused
from client.futures import ComputeFuture
from client.watcher import GroupWatcher
from fxgate_contract.serialize import serialize_data
from fxgate_contract.states import TaskState
from gateway.core import Gateway
from gateway.store.database import Store
from gateway.store.records import Completion, GroupInfo, NewTask
from tests.support.inprocess import InProcessDaemon

TIMEOUT = 30.0  # seconds a step may take before the test fails instead of hanging


@pytest.fixture
def served(tmp_path: Path) -> Iterator[InProcessDaemon]:
    daemon = InProcessDaemon(tmp_path / "state")
    daemon.start()
    yield daemon
    daemon.close()


@pytest.fixture
def conn(served: InProcessDaemon) -> Iterator[Connection]:
    c = Connection(served.address)
    yield c
    c.close()


def running(served: InProcessDaemon) -> Gateway:
    assert served.gateway is not None
    return served.gateway


def accept(store: Store, n: int) -> tuple[str, list[str]]:
    """A new group of n stored tasks (the store takes any function id; nothing runs them)."""
    group = GroupInfo(str(uuid.uuid4()), "local", str(uuid.uuid4()), None)
    return group.id, store.accept(group, [NewTask("f", "p")] * n, str(uuid.uuid4()), []).result()


def succeeded(task_id: str, value: Any) -> Completion:
    return Completion(TaskState.SUCCESS, serialize_data(value), task_id)


def failed(task_id: str) -> Completion:
    trace = "Traceback (most recent call last):\n  ...\nValueError: boom"
    return Completion(TaskState.FAILED, trace, task_id, error_code="RemoteExecutionError")


def watched(conn: Connection, group_id: str, ids: list[str]) -> tuple[GroupWatcher, list[Any]]:
    watcher = GroupWatcher(conn, group_id)
    futures = [ComputeFuture(t) for t in ids]
    watcher.watch(futures, replay=False)
    return watcher, futures


def ended(watcher: GroupWatcher) -> bool:
    watcher.join(TIMEOUT)
    return not watcher._thread.is_alive()


def test_futures_resolve_with_their_results(served: InProcessDaemon, conn: Connection) -> None:
    gw = running(served)
    group, ids = accept(gw.store, 3)
    watcher, futures = watched(conn, group, ids)
    try:
        gw.complete([succeeded(ids[0], {"x": 1}), failed(ids[1])]).result()
        gw.complete([succeeded(ids[2], [1, 2, 3])]).result()
        assert futures[0].result(TIMEOUT) == {"x": 1}
        with pytest.raises(ValueError, match="boom"):
            futures[1].result(TIMEOUT)
        assert futures[2].result(TIMEOUT) == [1, 2, 3]
        assert watcher.open_futures() == []
    finally:
        watcher.stop()
    assert ended(watcher)


def test_results_committed_before_the_watch_began_are_replayed(
    served: InProcessDaemon, conn: Connection
) -> None:
    gw = running(served)
    group, ids = accept(gw.store, 4)
    gw.complete([succeeded(t, n) for n, t in enumerate(ids[:3])]).result()
    watcher, futures = watched(conn, group, ids)
    try:
        assert [f.result(TIMEOUT) for f in futures[:3]] == [0, 1, 2]
        gw.complete([succeeded(ids[3], 3)]).result()  # and live after the replay
        assert futures[3].result(TIMEOUT) == 3
    finally:
        watcher.stop()
    assert ended(watcher)


def test_a_restarting_server_keeps_the_futures_and_replays_what_was_missed(
    served: InProcessDaemon, conn: Connection
) -> None:
    gw = running(served)
    group, ids = accept(gw.store, 3)
    watcher, futures = watched(conn, group, ids)
    try:
        gw.complete([succeeded(ids[0], "before")]).result()
        assert futures[0].result(TIMEOUT) == "before"
        served.stop()  # the hub ends the stream, then the server goes away
        # Committed while no server runs (as a daemon's last commits before it exits).
        store = Store(served.settings.db)
        store.open()
        store.complete([succeeded(ids[1], "while down")]).result()
        store.close()
        assert not any(f.done() for f in futures[1:])
        assert watcher.open_futures() == futures[1:]
        gw = served.start()
        assert futures[1].result(TIMEOUT) == "while down"  # replayed after the last seq seen
        gw.complete([succeeded(ids[2], "after")]).result()
        assert futures[2].result(TIMEOUT) == "after"
    finally:
        watcher.stop()
    assert ended(watcher)


def test_a_stream_the_server_ends_is_resumed_without_losing_a_result(
    served: InProcessDaemon, conn: Connection
) -> None:
    """The hub closes (streams end cleanly) while the server keeps serving."""
    gw = running(served)
    group, ids = accept(gw.store, 2)
    watcher, futures = watched(conn, group, ids)
    try:
        gw.complete([succeeded(ids[0], 0)]).result()
        assert futures[0].result(TIMEOUT) == 0
        gw.hub.close()
        gw.complete([succeeded(ids[1], 1)]).result()  # no live stream gets this: replayed
        assert futures[1].result(TIMEOUT) == 1
    finally:
        watcher.stop()
    assert ended(watcher)


def test_a_refused_watch_fails_every_future_and_ends(conn: Connection) -> None:
    unknown = str(uuid.uuid4())  # the daemon has no such group: NOT_FOUND, not retried
    watcher, futures = watched(conn, unknown, [str(uuid.uuid4()), str(uuid.uuid4())])
    for fut in futures:
        err = fut.exception(TIMEOUT)
        assert isinstance(err, RequestRefused) and err.code == "NOT_FOUND", err
        assert unknown in str(err)
    assert ended(watcher)
    assert watcher.open_futures() == []


def test_stop_ends_the_thread_and_leaves_the_futures_open(
    served: InProcessDaemon, conn: Connection
) -> None:
    gw = running(served)
    group, ids = accept(gw.store, 2)
    watcher, futures = watched(conn, group, ids)
    gw.complete([succeeded(ids[0], "seen")]).result()
    assert futures[0].result(TIMEOUT) == "seen"  # the stream is open and live
    watcher.stop()
    assert ended(watcher)
    assert not futures[1].done()  # stopping the stream is not a failure of the task
    assert watcher.open_futures() == [futures[1]]


def test_stop_before_the_thread_ever_ran_and_join_without_start(conn: Connection) -> None:
    watcher = GroupWatcher(conn, str(uuid.uuid4()))
    watcher.join(TIMEOUT)  # never started: returns at once
    watcher.stop()
    watcher.watch([ComputeFuture(str(uuid.uuid4()))], replay=False)  # too late: not started
    assert ended(watcher) and watcher._thread.ident is None


def test_finish_when_idle_ends_the_thread_after_the_last_result(
    served: InProcessDaemon, conn: Connection
) -> None:
    gw = running(served)
    group, ids = accept(gw.store, 2)
    watcher, futures = watched(conn, group, ids)
    watcher.finish_when_idle()
    gw.complete([succeeded(ids[0], 0)]).result()
    assert futures[0].result(TIMEOUT) == 0
    assert watcher._thread.is_alive()  # one future still open
    gw.complete([succeeded(ids[1], 1)]).result()
    assert futures[1].result(TIMEOUT) == 1
    assert ended(watcher)


def test_a_result_that_comes_before_its_submit_answer_resolves_its_future(
    served: InProcessDaemon, conn: Connection
) -> None:
    """The stream may carry a task's result before Submit returned its id to the client."""
    gw = running(served)
    group, ids = accept(gw.store, 2)
    watcher, (first,) = watched(conn, group, ids[:1])
    try:
        watcher.begin_submit()  # ids[1] is being submitted: its answer is not back yet
        # One commit, so one message: handled in one go, the early one kept before the
        # watched one resolves.
        gw.complete([succeeded(ids[1], "early"), succeeded(ids[0], "watched")]).result()
        assert first.result(TIMEOUT) == "watched"
        early = ComputeFuture(ids[1])
        watcher.end_submit([early])
        assert early.done() and early.result() == "early"
        assert not watcher.known(ids[1])
    finally:
        watcher.stop()
    assert ended(watcher)


def test_a_result_for_no_future_and_no_submit_in_flight_is_not_kept(
    served: InProcessDaemon, conn: Connection
) -> None:
    gw = running(served)
    group, ids = accept(gw.store, 2)
    watcher, (first,) = watched(conn, group, ids[:1])
    try:
        gw.complete([succeeded(ids[1], "nobody's"), succeeded(ids[0], "watched")]).result()
        assert first.result(TIMEOUT) == "watched"
        late = ComputeFuture(ids[1])
        watcher.begin_submit()
        watcher.end_submit([late])  # not resolved from memory: it was never kept
        assert not late.done() and watcher.known(ids[1])
        watcher.watch([], replay=True)  # a replay of the group finds it in the store
        assert late.result(TIMEOUT) == "nobody's"
    finally:
        watcher.stop()
    assert ended(watcher)


def test_a_refused_first_submit_leaves_the_group_watchable(
    served: InProcessDaemon, conn: Connection
) -> None:
    """A group's first Submit refused (the group does not exist yet), the next one accepted."""
    group = GroupInfo(str(uuid.uuid4()), "local", str(uuid.uuid4()), None)
    watcher = GroupWatcher(conn, group.id)
    watcher.begin_submit()
    watcher.end_submit([])  # refused: no task ids, and no group in the daemon
    watcher.join(TIMEOUT)  # a stream started now would be refused and end for good
    gw = running(served)
    (task_id,) = gw.store.accept(group, [NewTask("f", "p")], str(uuid.uuid4()), []).result()
    fut = ComputeFuture(task_id)
    watcher.begin_submit()
    watcher.end_submit([fut])
    try:
        gw.complete([succeeded(task_id, "kept")]).result()
        assert fut.result(TIMEOUT) == "kept"
    finally:
        watcher.stop()
    assert ended(watcher)
