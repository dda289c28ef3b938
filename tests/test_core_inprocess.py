"""gateway/core.py's Gateway in this process, on a real SQLite store, with recording upstreams.

What the core decides on its own, seen from both sides: the store (what is
committed) and the upstreams (what they were handed, and when). No gRPC and
no worker processes: the upstreams only record.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from fxgate_contract.serialize import pack_function, pack_payload
from fxgate_contract.states import TaskState
from gateway.config import Settings
from gateway.core import Gateway
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.store.database import Store
from gateway.store.records import Completion, NewTask, PendingTask
from tests.support.inprocess import RecordingUpstream


def double(x: int) -> int:
    return 2 * x


class CommitCheckingUpstream(RecordingUpstream):
    """Records, at the moment it is handed tasks, the state the store holds for each."""

    def __init__(self, name: str, store: Store) -> None:
        super().__init__(name)
        self._store = store
        self._states_lock = threading.Lock()
        self.states_when_enqueued: dict[str, TaskState] = {}

    def enqueue(self, tasks: Sequence[PendingTask]) -> None:
        stored = {e.task_id: e.state for e in self._store.tasks([t.task_id for t in tasks])}
        with self._states_lock:
            self.states_when_enqueued.update(stored)
        super().enqueue(tasks)


def settings_in(path: Path) -> Settings:
    return Settings(state_dir=path, db=f"sqlite:///{path / 'gateway.db'}")


def make_gateway(path: Path, *upstreams: str) -> Gateway:
    store = Store(settings_in(path).db)
    return Gateway(
        settings_in(path), store, {n: CommitCheckingUpstream(n, store) for n in upstreams}
    )


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = make_gateway(tmp_path, "local", "globus")
    gw.start()
    yield gw
    gw.stop()


def upstream(gw: Gateway, name: str) -> CommitCheckingUpstream:
    found = gw.upstreams[name]
    assert isinstance(found, CommitCheckingUpstream)
    return found


def tasks(gw: Gateway, n: int) -> list[NewTask]:
    fid = gw.register_function("double", pack_function(double))
    return [NewTask(fid, pack_payload((i,), {})) for i in range(n)]


def test_start_starts_every_upstream_and_stop_stops_them(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, "local", "globus")
    gw.start()
    assert all(upstream(gw, n).started and not upstream(gw, n).stopped for n in gw.upstreams)
    gw.stop()
    assert all(upstream(gw, n).stopped for n in gw.upstreams)


def test_submit_to_local_hands_the_committed_tasks_to_the_local_upstream(
    gateway: Gateway,
) -> None:
    new = tasks(gateway, 3)
    group, ids = gateway.submit("", "local", new, "", ["a.JSONData"]).result()
    local, globus = upstream(gateway, "local"), upstream(gateway, "globus")
    assert local.task_ids() == ids and globus.task_ids() == []
    # Committed before it was handed over: the store already had each task.
    assert local.states_when_enqueued == dict.fromkeys(ids, TaskState.ACCEPTED)
    handed = local.enqueued
    assert {t.group_id for t in handed} == {group}
    assert {t.endpoint_id for t in handed} == {gateway.local_endpoint_id}
    assert [t.payload for t in handed] == [t.payload for t in new]
    assert {t.result_serializers for t in handed} == {("a.JSONData",)}
    assert gateway.group(group).upstream == "local"


def test_the_local_endpoint_uuid_routes_like_the_alias(gateway: Gateway) -> None:
    spelled = gateway.local_endpoint_id.upper()  # any spelling of the UUID
    _, ids = gateway.submit("", spelled, tasks(gateway, 1), "", []).result()
    assert upstream(gateway, "local").task_ids() == ids


def test_another_endpoint_uuid_routes_to_globus(gateway: Gateway) -> None:
    endpoint = str(uuid.uuid4())
    group, ids = gateway.submit("", endpoint, tasks(gateway, 2), "", []).result()
    assert upstream(gateway, "globus").task_ids() == ids
    assert upstream(gateway, "local").task_ids() == []
    assert {t.endpoint_id for t in upstream(gateway, "globus").enqueued} == {endpoint}
    assert gateway.group(group).upstream == "globus"
    # The group stays on its upstream: local tasks cannot join it.
    with pytest.raises(InvalidRequest, match="belongs to the globus upstream"):
        gateway.submit(group, "local", tasks(gateway, 1), "", []).result()


def test_without_a_globus_upstream_another_endpoint_is_not_found(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, "local")
    gw.start()
    try:
        with pytest.raises(NotFound, match="serves only the local endpoint"):
            gw.submit("", str(uuid.uuid4()), tasks(gw, 1), "", [])
        assert upstream(gw, "local").task_ids() == []
    finally:
        gw.stop()


def test_a_repeated_submit_id_accepts_nothing_twice(gateway: Gateway) -> None:
    new, submit_id = tasks(gateway, 3), str(uuid.uuid4())
    first = gateway.submit("", "local", new, submit_id, []).result()
    again = gateway.submit("", "local", new, submit_id, []).result()  # a retry
    assert again == first  # the same group (derived from the submit_id) and task ids
    group, ids = first
    assert sorted(t for t, _ in gateway.task_states(group)[1]) == sorted(ids)
    assert gateway.status().tasks[TaskState.ACCEPTED] == 3
    # handed to the upstream once: a retry's tasks are already there (or done)
    assert sorted(upstream(gateway, "local").task_ids()) == sorted(ids)


def test_a_submit_id_reused_for_another_batch_is_refused(gateway: Gateway) -> None:
    submit_id = str(uuid.uuid4())
    group, _ = gateway.submit("", "local", tasks(gateway, 2), submit_id, []).result()
    with pytest.raises(InvalidRequest, match="already used for another batch"):
        gateway.submit(group, "local", tasks(gateway, 3), submit_id, []).result()
    assert len(gateway.task_states(group)[1]) == 2


def test_start_hands_each_upstream_its_unfinished_tasks(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, "local", "globus")
    gw.start()
    _, local_ids = gw.submit("", "local", tasks(gw, 3), "", []).result()
    _, globus_ids = gw.submit("", str(uuid.uuid4()), tasks(gw, 2), "", []).result()
    gw.complete([Completion(TaskState.SUCCESS, "00\nx", local_ids[0])]).result()
    gw.stop()
    restarted = make_gateway(tmp_path, "local", "globus")
    restarted.start()
    try:
        assert sorted(upstream(restarted, "local").task_ids()) == sorted(local_ids[1:])
        assert sorted(upstream(restarted, "globus").task_ids()) == sorted(globus_ids)
    finally:
        restarted.stop()


def test_cancel_of_an_unknown_task_is_not_found(gateway: Gateway) -> None:
    _, ids = gateway.submit("", "local", tasks(gateway, 1), "", []).result()
    unknown = str(uuid.uuid4())
    with pytest.raises(NotFound, match=unknown):
        gateway.cancel([ids[0], unknown])
    with pytest.raises(InvalidRequest, match="not a UUID"):
        gateway.cancel(["not-an-id"])
    assert upstream(gateway, "local").withdrawn == []  # nothing was cancelled
    assert gateway.tasks(ids)[0].state == TaskState.ACCEPTED


def test_cancel_withdraws_unstarted_tasks_and_stores_them_cancelled(gateway: Gateway) -> None:
    group, ids = gateway.submit("", "local", tasks(gateway, 3), "", []).result()
    gateway.complete([Completion(TaskState.SUCCESS, "00\nx", ids[0])]).result()
    assert gateway.cancel(ids) == sorted(ids[1:])  # the finished one is not asked for
    assert sorted(upstream(gateway, "local").withdrawn) == sorted(ids[1:])
    states = dict(gateway.task_states(group)[1])
    assert states == {
        ids[0]: TaskState.SUCCESS,
        ids[1]: TaskState.CANCELLED,
        ids[2]: TaskState.CANCELLED,
    }
    assert gateway.cancel(ids) == []  # all finished now


def test_complete_returns_what_names_no_stored_task(gateway: Gateway) -> None:
    _, ids = gateway.submit("", "local", tasks(gateway, 1), "", []).result()
    by_our_id = Completion(TaskState.SUCCESS, "00\nx", task_id=str(uuid.uuid4()))
    by_upstream_id = Completion(TaskState.SUCCESS, "00\nx", upstream_task_id=str(uuid.uuid4()))
    known = Completion(TaskState.SUCCESS, "00\nresult", task_id=ids[0])
    unknown = gateway.complete([by_our_id, known, by_upstream_id]).result()
    assert unknown == [by_our_id, by_upstream_id]
    (event,) = gateway.tasks(ids)
    assert (event.state, event.data) == (TaskState.SUCCESS, "00\nresult")
    # The same result again is a duplicate of a stored task, not an unknown one.
    assert gateway.complete([known]).result() == []


def test_release_removes_the_group_and_its_tasks(gateway: Gateway) -> None:
    group, ids = gateway.submit("", "local", tasks(gateway, 2), "", []).result()
    other, _ = gateway.submit("", "local", tasks(gateway, 1), "", []).result()
    with pytest.raises(Conflict, match="2 unfinished tasks"):
        gateway.release(group)  # its tasks were never run
    assert gateway.release(group, cancel_unfinished=True) == 2
    with pytest.raises(NotFound, match=group):
        gateway.group(group)
    with pytest.raises(NotFound):
        gateway.tasks(ids)
    with pytest.raises(NotFound):
        gateway.release(group)  # once only
    assert len(gateway.task_states(other)[1]) == 1  # another group is untouched
