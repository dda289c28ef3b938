"""The one test suite every upstream passes (gateway/upstreams/base.py's contract).

As huey tests all its storages with one mixin: `UpstreamContract` holds the
tests, and tests/test_upstream_contract.py has one subclass per upstream that
says only how to build it and how to keep its tasks from finishing. A new
upstream passes these tests unchanged.

The harness is what the daemon gives an upstream, made of real parts: a
Store on a SQLite file, and a sink that commits through `Store.complete` (as
Gateway.complete does) and records what reached it. Waiting is on what the
sink committed (a condition), never on a fixed sleep.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import pytest

from fxgate_contract.serialize import deserialize, pack_function, pack_payload
from fxgate_contract.states import TaskState
from gateway.store.database import Store
from gateway.store.records import (
    Completion,
    FunctionRecord,
    GroupInfo,
    NewTask,
    PendingTask,
    TaskEvent,
)
from gateway.upstreams.base import Upstream, UpstreamPorts

WAIT_S = 120.0


def double(x: int) -> int:
    return x * 2


def fails(x: int) -> int:
    raise ValueError(f"remote failure {x}")


class Harness:
    """A real store, the ports an upstream gets, and a record of what reached the sink.

    The sink runs on the upstream's threads; its commit callback on the
    store's writer thread; the test's thread waits on _cond for commits. All
    records are under _cond.
    """

    def __init__(self, store: Store, endpoint_id: str) -> None:
        self.store = store
        self.endpoint_id = endpoint_id
        self.group_id = str(uuid.uuid4())
        self.upstream = ""  # the name of the upstream the group is on: set by the first start
        self.ports = UpstreamPorts(
            self.sink,
            self.function,
            store.payloads,
            store,
            lambda _g, ids: store.mark_submitted(ids),
        )
        self._cond = threading.Condition()
        self.delivered: list[Completion] = []  # every completion the sink was handed
        self.committed: dict[str, list[TaskEvent]] = {}  # task id -> events its commits made
        self._functions: dict[Callable[..., Any], str] = {}

    # ------------------------------------------------------------ ports
    def sink(self, completions: Sequence[Completion]) -> Future[list[Completion]]:
        """Commit through the store; resolves (on the writer thread) to the unknown ones."""
        with self._cond:
            self.delivered.extend(completions)
        out: Future[list[Completion]] = Future()

        def committed(fut: Future[tuple[list[TaskEvent], list[Completion]]]) -> None:
            try:
                events, unknown = fut.result()
            except Exception as exc:  # noqa: BLE001 - the upstream's to handle
                out.set_exception(exc)
                return
            with self._cond:
                for e in events:
                    self.committed.setdefault(e.task_id, []).append(e)
                self._cond.notify_all()
            out.set_result(unknown)

        self.store.complete(list(completions)).add_done_callback(committed)
        return out

    def function(self, function_id: str) -> FunctionRecord:
        found = self.store.function_code(function_id)
        if found is None:
            raise KeyError(function_id)
        return found

    # ------------------------------------------------------------ tasks
    def tasks(self, fn: Callable[..., Any], *calls: tuple[Any, ...]) -> list[PendingTask]:
        """Accept one task per argument tuple in the harness's group, as a Submit does."""
        fid = self._functions.get(fn)
        if fid is None:
            fid = self._functions[fn] = str(uuid.uuid4())
            record = FunctionRecord(fn.__name__, pack_function(fn))
            self.store.register_function(fid, record).result()
        new = [NewTask(fid, pack_payload(args, {})) for args in calls]
        group = GroupInfo(self.group_id, self.upstream, self.endpoint_id, None)
        ids = self.store.accept(group, new, str(uuid.uuid4()), ()).result()
        return [
            PendingTask(tid, self.group_id, self.endpoint_id, fid, t.payload, ())
            for tid, t in zip(ids, new, strict=True)
        ]

    def resume(self, upstream: Upstream) -> int:
        """Hand the upstream every unfinished task, in pages, as Gateway.start does."""
        resumed, after = 0, ""
        while page := self.store.unfinished(upstream.name, after_id=after):
            upstream.enqueue(page)
            resumed += len(page)
            after = page[-1].task_id
        return resumed

    # ------------------------------------------------------------ waits
    def wait_finished(self, tasks: Sequence[PendingTask]) -> dict[str, TaskEvent]:
        """The first committed event of each task, once every one has one."""
        ids = [t.task_id for t in tasks]
        with self._cond:
            done = self._cond.wait_for(lambda: all(i in self.committed for i in ids), WAIT_S)
            missing = [i for i in ids if i not in self.committed]
            assert done, f"{len(missing)} of {len(ids)} tasks never finished"
            return {i: self.committed[i][0] for i in ids}

    def reached_sink(self, task_id: str) -> list[Completion]:
        """Completions handed to the sink for this task (by our id or the upstream's)."""
        upstream_id = self.store.tasks([task_id])[0].upstream_task_id
        with self._cond:
            return [
                c
                for c in self.delivered
                if c.task_id == task_id or (upstream_id and c.upstream_task_id == upstream_id)
            ]


class Held(Protocol):
    """Tasks kept from finishing (see UpstreamContract.stalled and .unfinishing)."""

    def task(self, x: int) -> PendingTask:
        """A task (in the harness's group) that returns x * 2 once let go."""

    def wait_started(self, task_id: str) -> None:
        """Block until the upstream has started this task."""


def child_pids() -> set[int]:
    """Pids of this process's children (any thread's)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            found.update(int(p) for p in (task / "children").read_text().split())
        except FileNotFoundError:  # a thread that just ended
            continue
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class UpstreamContract:
    """What every upstream does; a subclass implements the four methods below."""

    # What an upstream of this kind holds while it works, to be let go at stop.
    holds_processes = False
    holds_connections = False
    # Name prefixes of threads that belong to the test's doubles, not to the upstream.
    helper_threads: tuple[str, ...] = ()

    def new_upstream(self) -> Upstream:
        """A fresh, unstarted upstream."""
        raise NotImplementedError

    def endpoint_id(self) -> str:
        """The endpoint the harness's tasks go to."""
        raise NotImplementedError

    def stalled(self, h: Harness) -> AbstractContextManager[Held]:
        """Within: the first task enqueued starts and does not finish; tasks enqueued after
        it do not start. On leaving, they all may run."""
        raise NotImplementedError

    def unfinishing(self, h: Harness) -> AbstractContextManager[Held]:
        """Within: tasks enqueued start (the first at once) and none finishes, even if the
        upstream stops. On leaving, a new upstream can finish them."""
        raise NotImplementedError

    def connections(self) -> set[str]:
        """The upstream's connections as the other side sees them (a broker's list)."""
        return set()

    # ---------------------------------------------------------- fixtures
    @pytest.fixture
    def h(self, tmp_path: Path) -> Iterator[Harness]:
        store = Store(f"sqlite:///{tmp_path / 'store.db'}")
        store.open()
        try:
            yield Harness(store, self.endpoint_id())
        finally:
            store.close()

    def start_upstream(self, h: Harness) -> Upstream:
        upstream = self.new_upstream()
        h.upstream = h.upstream or upstream.name
        upstream.start(h.ports)
        return upstream

    # ------------------------------------------------------------- tests
    def test_every_task_reaches_the_sink_once_and_is_committed(self, h: Harness) -> None:
        upstream = self.start_upstream(h)
        try:
            tasks = h.tasks(double, *[(i,) for i in range(20)])
            upstream.enqueue(tasks)
            finished = h.wait_finished(tasks)
        finally:
            upstream.stop()
        for i, t in enumerate(tasks):
            assert finished[t.task_id].state == TaskState.SUCCESS
            assert deserialize(finished[t.task_id].data) == i * 2
            assert len(h.reached_sink(t.task_id)) == 1, t.task_id
            assert len(h.committed[t.task_id]) == 1
        stored = {e.task_id: e for e in h.store.tasks([t.task_id for t in tasks])}
        assert {e.state for e in stored.values()} == {TaskState.SUCCESS}
        assert [deserialize(stored[t.task_id].data) for t in tasks] == [i * 2 for i in range(20)]

    def test_a_task_that_raises_fails_with_its_error(self, h: Harness) -> None:
        upstream = self.start_upstream(h)
        try:
            bad, good = h.tasks(fails, (7,)) + h.tasks(double, (3,))
            upstream.enqueue([bad, good])
            finished = h.wait_finished([bad, good])
        finally:
            upstream.stop()
        failed = finished[bad.task_id]
        assert failed.state == TaskState.FAILED
        assert failed.error_code
        assert "remote failure 7" in failed.data + failed.error_message + failed.exception
        assert finished[good.task_id].state == TaskState.SUCCESS

    def test_cancel_withdraws_exactly_the_tasks_not_started(self, h: Harness) -> None:
        upstream = self.start_upstream(h)
        try:
            with self.stalled(h) as held:
                running = held.task(1)
                upstream.enqueue([running])
                held.wait_started(running.task_id)
                waiting = [held.task(2), held.task(3)]
                upstream.enqueue(waiting)
                ids = [running.task_id] + [t.task_id for t in waiting] + [str(uuid.uuid4())]
                assert upstream.cancel(ids) == {t.task_id for t in waiting}
                assert upstream.cancel(ids) == set()  # withdrawn once
                cancelled = [
                    Completion(TaskState.CANCELLED, "", task_id=t.task_id) for t in waiting
                ]
                h.sink(cancelled).result()  # as Gateway.cancel commits them
            assert h.wait_finished([running])[running.task_id].state == TaskState.SUCCESS
            # A task enqueued after the cancelled ones finishes; they never ran.
            later = h.tasks(double, (4,))
            upstream.enqueue(later)
            assert h.wait_finished(later)[later[0].task_id].state == TaskState.SUCCESS
        finally:
            upstream.stop()
        for t in waiting:
            assert h.reached_sink(t.task_id) == [c for c in cancelled if c.task_id == t.task_id]
            assert h.store.tasks([t.task_id])[0].state == TaskState.CANCELLED

    def test_a_new_upstream_finishes_what_a_stopped_one_left(self, h: Harness) -> None:
        first = self.start_upstream(h)
        with self.unfinishing(h) as held:
            tasks = [held.task(i) for i in range(3)]
            first.enqueue(tasks)
            held.wait_started(tasks[0].task_id)
            first.stop()
            left = h.store.unfinished(first.name)
            assert {t.task_id for t in left} == {t.task_id for t in tasks}
        second = self.start_upstream(h)
        try:
            assert h.resume(second) == len(tasks)
            finished = h.wait_finished(tasks)
        finally:
            second.stop()
        assert [deserialize(finished[t.task_id].data) for t in tasks] == [0, 2, 4]
        assert all(len(h.committed[t.task_id]) == 1 for t in tasks)

    def test_stop_releases_threads_processes_and_connections(self, h: Harness) -> None:
        threads_before = set(threading.enumerate())
        children_before = child_pids()
        upstream = self.start_upstream(h)
        try:
            tasks = h.tasks(double, *[(i,) for i in range(4)])
            upstream.enqueue(tasks)
            h.wait_finished(tasks)
            ours = set(threading.enumerate()) - threads_before
            children = child_pids() - children_before
            connections = self.connections()
            assert ours, "the upstream runs no thread of its own"
            assert bool(children) == self.holds_processes, children
            assert bool(connections) == self.holds_connections, connections
        finally:
            upstream.stop()

        def leftovers() -> set[threading.Thread]:
            return {
                t
                for t in set(threading.enumerate()) - threads_before
                if t.is_alive() and not t.name.startswith(self.helper_threads)
            }

        # Nothing to await from outside: poll until what stop closed is seen closed.
        deadline = time.monotonic() + 30
        while (leftovers() or self.connections()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not leftovers(), sorted(t.name for t in leftovers())
        assert not self.connections()
        assert not [pid for pid in children if alive(pid)], children
