"""Task ids: fxgate's from acceptance, the Globus one as soon as the service assigns it,
and either accepted wherever a task or task group id is."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from client import Client, Executor, RequestRefused
from client.futures import ComputeFuture
from fxgate_contract.serialize import serialize_data
from tests.daemon import DaemonProcess
from tests.support.fake_globus import FakeGlobus
from tests.support.fixtures import fake_globus, rabbit  # noqa: F401


def double(x: int) -> int:
    return x * 2


@pytest.fixture
def gdaemon(tmp_path: Path, fake_globus: FakeGlobus) -> Iterator[DaemonProcess]:  # noqa: F811
    """A daemon whose Globus upstream is the fake service."""
    d = DaemonProcess(tmp_path / "state", extra_env=fake_globus.daemon_env())
    d.start()
    yield d
    assert d.stop() in (0, -9), d.log()


def wait_for_upstream_ids(futures: list[ComputeFuture], timeout: float = 60) -> None:
    """Poll: a future has no hook for its upstream id arriving (nothing to await)."""
    deadline = time.monotonic() + timeout
    while not all(f.upstream_task_id for f in futures):
        assert time.monotonic() < deadline, [f.upstream_task_id for f in futures]
        time.sleep(0.02)


def test_future_gets_its_globus_id_before_its_result(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
) -> None:
    fake_globus.set_mode("manual")  # the service accepts tasks and runs none
    with Executor(endpoint_id=fake_globus.endpoint_id, address=gdaemon.address) as ex:
        futures = [ex.submit(double, i) for i in range(20)]
        accepted = fake_globus.wait_for_tasks(20)
        wait_for_upstream_ids(futures)
        assert not any(f.done() for f in futures)  # SUBMITTED finishes nothing
        fxgate_ids = [f.task_id for f in futures]
        assert {f.upstream_task_id for f in futures} == {a.task_id for a in accepted}
        fake_globus.run_waiting()
        assert [f.result(timeout=60) for f in futures] == [i * 2 for i in range(20)]
    assert [f.task_id for f in futures] == fxgate_ids  # fxgate's id never changes


def test_globus_ids_are_accepted_wherever_a_task_or_group_id_is(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
) -> None:
    with Executor(endpoint_id=fake_globus.endpoint_id, address=gdaemon.address) as ex:
        futures = [ex.submit(double, i) for i in range(3)]
        assert [f.result(timeout=60) for f in futures] == [0, 2, 4]
        group_id = ex.task_group_id
    ours, theirs = futures[1].task_id, futures[1].upstream_task_id
    assert ours and theirs and ours != theirs
    unknown = str(uuid.uuid4())
    with Client(address=gdaemon.address) as c:
        assert c.get_result(theirs) == 2
        assert c.get_task(theirs.upper())["result"] == 2
        batch = c.get_batch_result([ours, str(futures[2].upstream_task_id), unknown])
        assert set(batch) == {ours, futures[2].upstream_task_id}  # the unknown one left out
        assert batch[ours]["result"] == 2
        with pytest.raises(RequestRefused, match="NOT_FOUND"):
            c.get_task(unknown)
        with pytest.raises(RequestRefused, match="NOT_FOUND"):
            c.get_result(unknown)
        assert c.cancel([theirs]) == []  # finished: named by its Globus id, nothing to cancel
        upstream_group = c.get_task_group(group_id)["upstream_task_group_id"]
        listing = c.get_task_group(upstream_group)
        assert listing["taskgroup_id"] == group_id
        assert {t["upstream_task_id"] for t in listing["tasks"]} == {
            f.upstream_task_id for f in futures
        }
    with Executor(endpoint_id=fake_globus.endpoint_id, address=gdaemon.address) as later:
        reloaded = later.reload_tasks(upstream_group)
        assert later.task_group_id == group_id  # adopted, as fxgate's id of the group
        assert sorted(f.result(timeout=60) for f in reloaded) == [0, 2, 4]
        assert {f.upstream_task_id for f in reloaded} == {f.upstream_task_id for f in futures}
        assert later.submit(double, 5).result(timeout=60) == 10  # joins the adopted group
    with Client(address=gdaemon.address) as c:
        assert len(c.get_task_group(group_id)["tasks"]) == 4


def test_a_later_watcher_learns_the_globus_ids_of_running_tasks(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
) -> None:
    fake_globus.set_mode("manual")
    with Client(address=gdaemon.address) as c:
        fid = c.register_function(double)
        batch = c.create_batch()
        for i in range(5):
            batch.add(fid, args=(i,))
        c.batch_run(fake_globus.endpoint_id, batch)
    accepted = fake_globus.wait_for_tasks(5)
    with Client(address=gdaemon.address) as c:  # the ids are committed once listed
        deadline = time.monotonic() + 60
        while not all(
            t["upstream_task_id"] for t in c.get_task_group(batch.task_group_id)["tasks"]
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    with Executor(address=gdaemon.address) as ex:
        futures = ex.reload_tasks(batch.task_group_id)
        assert {f.upstream_task_id for f in futures} == {a.task_id for a in accepted}
        for i, task in enumerate(accepted):
            fake_globus.publish_result(task.task_id, serialize_data(i))
        assert sorted(f.result(timeout=60) for f in futures) == [0, 1, 2, 3, 4]


def test_local_tasks_have_no_upstream_id_and_unknown_ids_are_left_out(
    client: Client, executor: Executor
) -> None:
    fut = executor.submit(double, 4)
    assert fut.result(timeout=60) == 8
    assert fut.upstream_task_id is None
    assert client.get_batch_result([str(uuid.uuid4())]) == {}
    assert client.get_batch_result([str(fut.task_id), str(uuid.uuid4())]) == {
        str(fut.task_id): client.get_task(str(fut.task_id))
    }
