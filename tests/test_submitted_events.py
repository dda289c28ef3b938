"""SUBMITTED events: a Globus task's upstream id reaches the group's watch streams as soon as
it is committed, live and at the start of a stream, without finishing anything.

Driven in-process on a real store and a real event loop (Gateway.submitted is
what the Globus upstream calls once the service answered a submit).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fxgate_contract.states import TaskState
from gateway.config import Settings
from gateway.core import Gateway
from gateway.errors import NotFound
from gateway.store.database import Store
from gateway.store.records import Completion, GroupInfo, NewTask, TaskEvent

TIMEOUT = 30.0  # seconds a step may take before the test fails instead of hanging


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    settings = Settings(state_dir=tmp_path, db=f"sqlite:///{tmp_path / 'gateway.db'}")
    gw = Gateway(settings, Store(settings.db), {})
    gw.start()
    yield gw
    gw.stop()


async def next_events(
    stream: AsyncGenerator[tuple[list[TaskEvent], bool], None],
) -> list[TaskEvent]:
    events, _ = await asyncio.wait_for(anext(stream), TIMEOUT)
    return events


def test_upstream_ids_reach_watchers_early_and_finish_nothing(gateway: Gateway) -> None:
    group = GroupInfo(str(uuid.uuid4()), "globus", str(uuid.uuid4()), None)
    ids = gateway.store.accept(group, [NewTask("f", "p")] * 3, str(uuid.uuid4()), []).result()
    ups = [str(uuid.uuid4()) for _ in ids]
    gateway.submitted(group.id, {ids[0]: ups[0]}).result()  # before any watcher

    async def scenario() -> list[list[TaskEvent]]:
        with ThreadPoolExecutor(2) as reads:
            stream = gateway.watch(group.id, 0, reads)
            try:
                early = await next_events(stream)  # the ids assigned before the stream began
                replay, done = await asyncio.wait_for(anext(stream), TIMEOUT)
                assert done and replay == []
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(
                    None, lambda: gateway.submitted(group.id, {ids[1]: ups[1]}).result()
                )
                live = await next_events(stream)
                done_later = Completion(TaskState.SUCCESS, "r", upstream_task_id=ups[1])
                await loop.run_in_executor(None, lambda: gateway.complete([done_later]).result())
                finished = await next_events(stream)
                return [early, live, finished]
            finally:
                await stream.aclose()

    early, live, finished = asyncio.run(scenario())
    assert [(e.task_id, e.upstream_task_id, e.state, e.seq) for e in early] == [
        (ids[0], ups[0], TaskState.SUBMITTED, 0)
    ]
    assert [(e.task_id, e.upstream_task_id, e.state, e.seq) for e in live] == [
        (ids[1], ups[1], TaskState.SUBMITTED, 0)
    ]
    assert [(e.task_id, e.upstream_task_id, e.state, e.seq) for e in finished] == [
        (ids[1], ups[1], TaskState.SUCCESS, 1)
    ]
    assert gateway.hub.watcher_count() == 0


def test_either_id_names_a_task_and_unknown_ones_may_be_left_out(gateway: Gateway) -> None:
    group = GroupInfo(str(uuid.uuid4()), "globus", str(uuid.uuid4()), None)
    ids = gateway.store.accept(group, [NewTask("f", "p")] * 2, str(uuid.uuid4()), []).result()
    up = str(uuid.uuid4())
    gateway.submitted(group.id, {ids[0]: up}).result()
    unknown = str(uuid.uuid4())
    assert [e.task_id for e in gateway.tasks([up.upper(), ids[1]])] == [ids[0], ids[1]]
    assert [e.task_id for e in gateway.tasks([ids[0], up])] == [ids[0]]  # one task, once
    assert [e.task_id for e in gateway.tasks([unknown, up], omit_unknown=True)] == [ids[0]]
    with pytest.raises(NotFound, match="unknown task ids"):
        gateway.tasks([unknown, up])
    upstream_group = str(uuid.uuid4())
    gateway.store.set_upstream_group(group.id, upstream_group).result()
    found, states, upstream_ids = gateway.task_states(upstream_group)
    assert found.id == group.id and len(states) == 2 and upstream_ids == {ids[0]: up}
