"""Task options in the store: each distinct set stored once, one object per set when read back."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.errors import InvalidRequest
from gateway.store.database import Store
from gateway.store.records import NO_OPTIONS, GroupInfo, NewTask, TaskOptions
from gateway.store.tables import TASK_OPTIONS


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


def group() -> GroupInfo:
    return GroupInfo(str(uuid.uuid4()), "globus", str(uuid.uuid4()), None)


A = TaskOptions('{"worker_init": "a"}', '{"num_nodes": 2}', '{"python_version": "3"}')
B = TaskOptions('{"worker_init": "b"}', "", "")


def test_equal_options_are_stored_once_and_shared_after_a_restart(store: Store) -> None:
    g = group()
    copy_of_a = TaskOptions(A.user_endpoint_config, A.resource_specification, A.user_runtime)
    for options in (A, B, copy_of_a, NO_OPTIONS):
        store.accept(g, [NewTask("f", "p")] * 3, str(uuid.uuid4()), [], options).result()
    with store.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(TASK_OPTIONS)).scalar_one() == 2
    store.close()
    again = Store(store.url)
    again.open()
    try:
        tasks = again.unfinished("globus")
    finally:
        again.close()
    found = [t.options for t in tasks]
    assert sorted(found, key=repr) == sorted([A] * 6 + [B] * 3 + [NO_OPTIONS] * 3, key=repr)
    assert len({id(o) for o in found if o == A}) == 1  # one object for the six tasks
    # and across pages of unfinished too
    again = Store(store.url)
    again.open()
    try:
        pages = [again.unfinished("globus", limit=1)]
        while pages[-1]:
            pages.append(again.unfinished("globus", after_id=pages[-1][-1].task_id, limit=1))
    finally:
        again.close()
    paged = [t.options for page in pages for t in page if t.options == A]
    assert len(paged) == 6 and len({id(o) for o in paged}) == 1


def test_a_retry_with_other_options_is_refused(store: Store) -> None:
    g, submit_id = group(), str(uuid.uuid4())
    first = store.accept(g, [NewTask("f", "p")], submit_id, [], A).result()
    assert store.accept(g, [NewTask("f", "p")], submit_id, [], A).result() == first
    with pytest.raises(InvalidRequest, match="same task group, tasks, functions and options"):
        store.accept(g, [NewTask("f", "p")], submit_id, [], B).result()


def test_a_database_from_before_task_options_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = Store(f"sqlite:///{path}")
    old.open()
    g = group()
    ids = old.accept(g, [NewTask("f", "p")], str(uuid.uuid4()), []).result()
    old.close()
    with sqlite3.connect(path) as db:  # the tasks table as the previous release made it
        db.execute("ALTER TABLE tasks DROP COLUMN options_key")
    store = Store(f"sqlite:///{path}")
    store.open()
    try:
        (task,) = store.unfinished("globus")
        assert task.task_id == ids[0] and task.options is NO_OPTIONS
        store.accept(g, [NewTask("f", "p")], str(uuid.uuid4()), [], A).result()
        assert {t.options for t in store.unfinished("globus")} == {NO_OPTIONS, A}
    finally:
        store.close()
