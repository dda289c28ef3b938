"""Listing groups and tasks, and the retention sweep on demand: the core on a real SQLite store.

What `fxgate groups`, `fxgate tasks` and `fxgate gc` rely on: pages that
visit every row once in order, counts read with the seq a Watch resumes
after, labels kept from the first submit, and a dry run that releases
nothing while the real sweep releases exactly what the dry run named.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fxgate_contract.serialize import pack_function, pack_payload
from fxgate_contract.states import TaskState
from gateway.config import Settings
from gateway.core import Gateway
from gateway.errors import InvalidRequest, NotFound
from gateway.store.database import Store
from gateway.store.records import Completion, NewTask
from tests.support.inprocess import RecordingUpstream


def double(x: int) -> int:
    return 2 * x


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database: SQLite in tmp_path, or one on the session's PostgreSQL."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres").new_database()
        return url
    return f"sqlite:///{tmp_path / 'gateway.db'}"


def make_gateway(path: Path, db: str, retention_days: float = 14.0) -> Gateway:
    settings = Settings(state_dir=path, db=db, retention_days=retention_days)
    return Gateway(settings, Store(settings.db), {"local": RecordingUpstream("local")})


@pytest.fixture
def gateway(tmp_path: Path, db: str) -> Iterator[Gateway]:
    gw = make_gateway(tmp_path, db)
    gw.start()
    yield gw
    gw.stop()


def submit(gw: Gateway, n: int, label: str = "", group: str = "") -> tuple[str, list[str]]:
    fid = gw.register_function("double", pack_function(double))
    new = [NewTask(fid, pack_payload((i,), {})) for i in range(n)]
    return gw.submit(group, "local", new, "", [], label=label).result()


def finish(gw: Gateway, task_ids: list[str], state: TaskState = TaskState.SUCCESS) -> None:
    gw.complete([Completion(state, "", task_id=t) for t in task_ids]).result()


def test_groups_are_listed_newest_first_with_label_counts_and_last_seq(gateway: Gateway) -> None:
    old, old_ids = submit(gateway, 3, label="first")
    new, new_ids = submit(gateway, 2)
    finish(gateway, old_ids[:2])
    finish(gateway, old_ids[2:], TaskState.FAILED)
    groups, token = gateway.list_groups(0, "")
    assert token == ""
    assert [g.group.id for g in groups] == [new, old]
    newest, oldest = groups
    assert (oldest.group.label, newest.group.label) == ("first", "")
    assert oldest.counts == {TaskState.SUCCESS: 2, TaskState.FAILED: 1}
    assert newest.counts == {TaskState.ACCEPTED: 2}
    # last_seq: the seq of the group's last completion, so a Watch after it misses none
    assert oldest.last_seq == max(e.seq for e in gateway.tasks(old_ids))
    assert newest.last_seq == 0
    # a later submit to the group keeps its first label
    submit(gateway, 1, label="second", group=old)
    assert gateway.list_groups(0, "", old)[0][0].group.label == "first"


def test_group_pages_visit_every_group_once_in_order(gateway: Gateway) -> None:
    made = [submit(gateway, 1)[0] for _ in range(5)]
    seen, token, pages = [], "", 0
    while True:
        page, token = gateway.list_groups(2, token)
        seen += [g.group.id for g in page]
        pages += 1
        if not token:
            break
    assert seen == made[::-1]
    assert pages == 3


def test_one_group_by_id_and_an_unknown_one(gateway: Gateway) -> None:
    group, _ = submit(gateway, 2)
    submit(gateway, 1)
    only, _ = gateway.list_groups(0, "", group)
    assert [g.group.id for g in only] == [group]
    with pytest.raises(NotFound):
        gateway.list_groups(0, "", str(uuid.uuid4()))


@pytest.mark.parametrize(
    "token", ["x", "1.5/not-a-uuid", f"nan/{uuid.uuid4()}", "1/2/3", "é" * 10, "9" * 200]
)
def test_a_page_token_the_daemon_did_not_give_is_refused(gateway: Gateway, token: str) -> None:
    with pytest.raises(InvalidRequest, match="page_token"):
        gateway.list_groups(0, token)


def test_page_sizes_are_bounded(gateway: Gateway) -> None:
    group, _ = submit(gateway, 1)
    with pytest.raises(InvalidRequest, match="page_size"):
        gateway.list_groups(1001, "")
    with pytest.raises(InvalidRequest, match="page_size"):
        gateway.list_tasks(group, 0, 10_001, "")


def test_tasks_by_state_in_pages(gateway: Gateway) -> None:
    group, ids = submit(gateway, 5)
    finish(gateway, ids[:3])
    _, done, token = gateway.list_tasks(group, int(TaskState.SUCCESS), 0, "")
    assert sorted(t.task_id for t in done) == sorted(ids[:3]) and token == ""
    assert {t.state for t in done} == {TaskState.SUCCESS}
    assert all(t.completed_at > 0 for t in done)
    seen, token = [], ""
    while True:
        _, page, token = gateway.list_tasks(group, 0, 2, token)
        seen += [t.task_id for t in page]
        if not token:
            break
    assert seen == sorted(ids)
    with pytest.raises(InvalidRequest, match="not a task state"):
        gateway.list_tasks(group, 99, 0, "")
    with pytest.raises(InvalidRequest, match="page_token"):
        gateway.list_tasks(group, 0, 0, "not-an-id")


def test_a_label_is_bounded(gateway: Gateway) -> None:
    with pytest.raises(InvalidRequest, match="label"):
        submit(gateway, 1, label="x" * 257)
    with pytest.raises(InvalidRequest, match="NUL"):
        submit(gateway, 1, label="a\x00b")


def test_gc_dry_run_names_what_the_real_sweep_then_releases(tmp_path: Path, db: str) -> None:
    gw = make_gateway(tmp_path, db, retention_days=0)  # every finished group is past retention
    gw.start()
    try:
        finished, finished_ids = submit(gw, 2)
        finish(gw, finished_ids)
        open_group, _ = submit(gw, 1)  # unfinished: never released by the sweep
        _, would = gw.collect_garbage(dry_run=True)
        assert would == {finished: 2}
        assert {g.group.id for g in gw.list_groups(0, "")[0]} == {finished, open_group}
        cutoff, released = gw.collect_garbage(dry_run=False)
        assert released == would
        assert [g.group.id for g in gw.list_groups(0, "")[0]] == [open_group]
        assert gw.status().task_groups == 1
        assert gw.collect_garbage(dry_run=True)[1] == {}
    finally:
        gw.stop()


def test_gc_keeps_groups_inside_the_retention_period(gateway: Gateway) -> None:
    group, ids = submit(gateway, 1)
    finish(gateway, ids)
    cutoff, released = gateway.collect_garbage(dry_run=False)
    assert released == {}
    assert dataclasses.asdict(gateway.list_groups(0, "")[0][0])["group"]["id"] == group


def test_a_store_made_before_labels_gains_the_column(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    store.open()
    store.close()
    with sqlite3.connect(tmp_path / "old.db") as db:  # as an fxgate before labels left it
        db.execute("ALTER TABLE task_groups DROP COLUMN label")
        db.execute(
            "INSERT INTO task_groups (id, upstream, endpoint_id, created_at, updated_at)"
            " VALUES ('11111111-1111-1111-1111-111111111111', 'local', 'e', 1.0, 1.0)"
        )
    store = Store(url)
    store.open()
    try:
        (old,) = store.group_page(10, None)
        assert (old.group.id, old.group.label, old.counts) == (
            "11111111-1111-1111-1111-111111111111",
            "",
            {},
        )
    finally:
        store.close()
