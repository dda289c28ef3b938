"""The Globus upstream's map from upstream task ids to fxgate's: bounded, used once."""

from __future__ import annotations

from fxgate_contract.states import TaskState
from gateway.store.records import Completion
from gateway.upstreams.globus.task_ids import TaskIds


def result(upstream_id: str, task_id: str | None = None) -> Completion:
    return Completion(TaskState.SUCCESS, "", task_id=task_id, upstream_task_id=upstream_id)


def test_a_result_gets_its_task_id_once_and_a_miss_passes_through() -> None:
    ids = TaskIds()
    ids.remember({"t1": "u1", "t2": "u2"}, "g")
    first = ids.resolve([result("u1"), result("u9"), result("u2", task_id="given")])
    assert [c.task_id for c in first] == ["t1", None, "given"]
    assert [c.group_id for c in first] == ["g", None, None]
    assert [c.upstream_task_id for c in first] == ["u1", "u9", "u2"]
    assert ids.resolve([result("u1")])[0].task_id is None  # a task has one result
    assert len(ids) == 1  # u2 stays: its result came already named


def test_past_the_limit_the_oldest_entries_go() -> None:
    ids = TaskIds(limit=3)
    ids.remember({"t1": "u1", "t2": "u2"}, "g1")
    ids.remember({"t3": "u3", "t4": "u4"}, "g2")
    assert len(ids) == 3
    resolved = ids.resolve([result(f"u{n}") for n in range(1, 5)])
    assert [c.task_id for c in resolved] == [None, "t2", "t3", "t4"]
