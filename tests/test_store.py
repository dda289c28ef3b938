"""The store on a real SQLite file and a real PostgreSQL: group commit, idempotence, counts."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from fxgate_contract.states import TaskState
from gateway.errors import StoreUnavailable
from gateway.store.counters import QUARANTINE_KEY
from gateway.store.database import Store
from gateway.store.records import Completion, GroupInfo, NewTask
from gateway.store.tables import GROUPS, META, TASKS
from gateway.store.writer import Transaction


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").new_database()
    else:
        url = f"sqlite:///{tmp_path / 'gateway.db'}"
    s = Store(url)
    s.open()
    yield s  # type: ignore[misc]
    s.close()


def truth(store: Store) -> tuple[dict[TaskState, int], int]:
    with store.engine.connect() as c:
        counts = {
            TaskState(s): n
            for s, n in c.execute(select(TASKS.c.state, func.count()).group_by(TASKS.c.state))
        }
        groups = c.execute(select(func.count()).select_from(GROUPS)).scalar_one()
    return counts, groups


def group() -> GroupInfo:
    return GroupInfo(str(uuid.uuid4()), "globus", str(uuid.uuid4()), None)


def test_counts_follow_every_write(store: Store) -> None:
    g1, g2 = group(), group()
    ids1 = store.accept(g1, [NewTask("f", "p")] * 10, str(uuid.uuid4()), []).result()
    ids2 = store.accept(g2, [NewTask("f", "p")] * 5, str(uuid.uuid4()), []).result()
    store.mark_submitted({t: str(uuid.uuid4()) for t in ids1[:6]}).result()
    done = [Completion(TaskState.SUCCESS, "00\nx", task_id=t) for t in ids1[:4]]
    store.complete(done + done).result()  # duplicates in one batch
    store.complete(done).result()  # and again later
    store.complete([Completion(TaskState.FAILED, "tb", task_id=ids2[0])]).result()
    store.quarantine([("q", "garbled", b"\x00")]).result()
    assert (store.state_counts(), store.group_count()) == truth(store)
    assert store.state_counts() == {
        TaskState.ACCEPTED: 8,
        TaskState.SUBMITTED: 2,
        TaskState.SUCCESS: 4,
        TaskState.FAILED: 1,
    }
    assert store.quarantine_count() == 1
    assert store.release(g2.id).result() == 5
    assert (store.state_counts(), store.group_count()) == truth(store)
    # counts survive a restart of the store
    store.close()
    again = Store(store.url)
    again.open()
    try:
        assert (again.state_counts(), again.group_count()) == truth(again)
        assert again.quarantine_count() == 1
    finally:
        again.close()


def truth_by_upstream(store: Store) -> dict[tuple[str, TaskState], int]:
    with store.engine.connect() as c:
        rows = c.execute(
            select(GROUPS.c.upstream, TASKS.c.state, func.count())
            .select_from(TASKS.join(GROUPS, TASKS.c.group_id == GROUPS.c.id))
            .group_by(GROUPS.c.upstream, TASKS.c.state)
        )
        return {(u, TaskState(s)): n for u, s, n in rows}


def test_counts_by_upstream_follow_every_write_and_a_reopen(store: Store) -> None:
    """Each write moves the counts of its tasks' upstream only, with the group's upstream
    remembered by the writer or, after a reopen, read from the database."""
    local = GroupInfo(str(uuid.uuid4()), "local", str(uuid.uuid4()), None)
    glob = group()
    lids = store.accept(local, [NewTask("f", "p")] * 6, str(uuid.uuid4()), []).result()
    gids = store.accept(glob, [NewTask("f", "p")] * 5, str(uuid.uuid4()), []).result()
    up = {t: str(uuid.uuid4()) for t in gids}
    store.mark_submitted({t: up[t] for t in gids[:3]}).result()  # its group read once
    store.mark_submitted({gids[3]: up[gids[3]]}, glob.id).result()  # its group named
    store.complete(
        [Completion(TaskState.SUCCESS, "r", task_id=t) for t in lids[:2]]
        + [Completion(TaskState.SUCCESS, "r", task_id=t, group_id=glob.id) for t in gids[:2]]
        + [Completion(TaskState.FAILED, "e", upstream_task_id=up[gids[2]])]
    ).result()
    store.complete([Completion(TaskState.CANCELLED, "", task_id=lids[2])]).result()
    assert (
        store.upstream_state_counts()
        == truth_by_upstream(store)
        == {
            ("local", TaskState.ACCEPTED): 3,
            ("local", TaskState.SUCCESS): 2,
            ("local", TaskState.CANCELLED): 1,
            ("globus", TaskState.ACCEPTED): 1,
            ("globus", TaskState.SUBMITTED): 1,
            ("globus", TaskState.SUCCESS): 2,
            ("globus", TaskState.FAILED): 1,
        }
    )
    store.close()
    again = Store(store.url)
    again.open()
    try:
        assert again.upstream_state_counts() == truth_by_upstream(again)
        again.complete([Completion(TaskState.SUCCESS, "r", task_id=gids[3])]).result()
        assert again.release(local.id).result() == 6
        assert (
            again.upstream_state_counts()
            == truth_by_upstream(again)
            == {
                ("globus", TaskState.ACCEPTED): 1,
                ("globus", TaskState.SUCCESS): 3,
                ("globus", TaskState.FAILED): 1,
            }
        )
        assert again.state_counts() == {
            TaskState.ACCEPTED: 1,
            TaskState.SUCCESS: 3,
            TaskState.FAILED: 1,
        }
    finally:
        again.close()


def test_duplicate_result_is_stored_once_and_reported_once(store: Store) -> None:
    g = group()
    (tid,) = store.accept(g, [NewTask("f", "p")], str(uuid.uuid4()), []).result()
    first, unknown = store.complete([Completion(TaskState.SUCCESS, "00\na", task_id=tid)]).result()
    second, _ = store.complete([Completion(TaskState.SUCCESS, "00\nb", task_id=tid)]).result()
    assert [e.data for e in first] == ["00\na"] and second == [] and unknown == []
    assert [e.data for e in store.events_after(g.id, 0, 10)] == ["00\na"]


def test_results_by_upstream_id_and_unknown_ids(store: Store) -> None:
    g = group()
    (tid,) = store.accept(g, [NewTask("f", "p")], str(uuid.uuid4()), []).result()
    store.mark_submitted({tid: "up-1"}).result()
    events, unknown = store.complete(
        [
            Completion(TaskState.SUCCESS, "00\na", upstream_task_id="up-1"),
            Completion(TaskState.SUCCESS, "00\nb", upstream_task_id="up-unknown"),
        ]
    ).result()
    assert [e.task_id for e in events] == [tid]
    assert [c.upstream_task_id for c in unknown] == ["up-unknown"]


def test_retried_submit_id_returns_the_first_ids(store: Store) -> None:
    g = group()
    submit_id = str(uuid.uuid4())
    tasks = [NewTask("f", f"p{i}") for i in range(1500)]  # more than one IN (...) chunk
    first = store.accept(g, tasks, submit_id, []).result()
    again = store.accept(g, tasks, submit_id, []).result()
    assert first == again
    assert store.state_counts() == {TaskState.ACCEPTED: 1500}


def test_concurrent_first_submits_create_the_group_once(store: Store) -> None:
    g = group()
    futures = [store.accept(g, [NewTask("f", "p")] * 3, str(uuid.uuid4()), []) for _ in range(5)]
    assert all(len(f.result()) == 3 for f in futures)
    assert store.group_count() == 1
    assert (store.state_counts(), store.group_count()) == truth(store)


def test_results_by_upstream_id_agree_with_the_database(store: Store) -> None:
    g = group()
    ids = store.accept(g, [NewTask("f", "p")] * 4, str(uuid.uuid4()), []).result()
    ups = {t: str(uuid.uuid4()) for t in ids}
    store.mark_submitted(ups).result()
    done = [Completion(TaskState.SUCCESS, "00\nx", upstream_task_id=ups[t]) for t in ids[:2]]
    events, unknown = store.complete(done + done).result()  # duplicates in one batch
    assert sorted(e.task_id for e in events) == sorted(ids[:2]) and unknown == []
    again, _ = store.complete(done).result()  # a later batch: already terminal
    assert again == []
    assert {e.group_id for e in events} == {g.id}
    assert (store.state_counts(), store.group_count()) == truth(store)
    assert store.release(g.id).result() == 4
    late, unknown = store.complete(
        [Completion(TaskState.SUCCESS, "00\nx", upstream_task_id=ups[ids[3]])]
    ).result()
    assert late == [] and len(unknown) == 1  # released: unknown, not resurrected


def test_a_group_stays_on_its_upstream(store: Store) -> None:
    from gateway.errors import InvalidRequest

    g = group()
    store.accept(g, [NewTask("f", "p")], str(uuid.uuid4()), []).result()
    local = GroupInfo(g.id, "local", "local-endpoint", None)
    with pytest.raises(InvalidRequest, match="belongs to the globus upstream"):
        store.accept(local, [NewTask("f", "p")], str(uuid.uuid4()), []).result()
    assert store.state_counts() == {TaskState.ACCEPTED: 1}


def test_sqlite_page_cache_is_bounded_per_connection(tmp_path: Path) -> None:
    """Dozens of pooled connections under many watchers must not hold 2 MB of cache each."""
    from gateway.store.database import PAGE_CACHE_KB

    s = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
    s.open()
    try:
        with s.engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA cache_size").scalar() == -PAGE_CACHE_KB
    finally:
        s.close()


def hold_writer(store: Store) -> threading.Event:
    """Keep the writer busy until the returned event is set.

    Whatever is queued meanwhile is committed as one batch, after it.
    """
    started, release = threading.Event(), threading.Event()

    def op(tx: Transaction) -> None:
        started.set()
        assert release.wait(60)

    store.write(op)
    assert started.wait(60)
    return release


def test_a_write_that_raises_counts_nothing_and_its_batch_still_commits(store: Store) -> None:
    ran: list[str | None] = []

    def failing(tx: Transaction) -> None:
        tx.count(QUARANTINE_KEY, 5)
        tx.count(TaskState.ACCEPTED, 3)
        tx.after_commit(lambda: ran.append("the failed write"))
        raise ValueError("this write fails")

    def seen_by_another_connection() -> None:
        with store.engine.connect() as c:
            ran.append(c.execute(select(META.c.value).where(META.c.key == "probe")).scalar())

    def passing(tx: Transaction) -> str:
        tx.conn.execute(insert(META).values(key="probe", value="committed"))
        tx.after_commit(seen_by_another_connection)
        return "ok"

    release = hold_writer(store)
    quarantined = store.quarantine([("q", "garbled", b"\x00")])
    bad = store.write(failing)
    good = store.write(passing)
    accepted = store.accept(group(), [NewTask("f", "p")] * 2, str(uuid.uuid4()), [])
    release.set()
    with pytest.raises(ValueError, match="this write fails"):
        bad.result()
    assert quarantined.result() is None and good.result() == "ok"
    assert len(accepted.result()) == 2
    assert ran == ["committed"]  # after the commit, and only the write that committed
    assert store.quarantine_count() == 1
    assert store.state_counts() == {TaskState.ACCEPTED: 2}
    assert (store.state_counts(), store.group_count()) == truth(store)


def locked_store(tmp_path: Path) -> tuple[Store, sqlite3.Connection]:
    """A store on SQLite with a short busy timeout, and a second connection to lock it with."""
    path = tmp_path / "gateway.db"
    store = Store(f"sqlite:///{path}", busy_timeout_ms=20)
    store.open()
    return store, sqlite3.connect(path, timeout=0.02, isolation_level=None)


def test_a_batch_retried_after_a_locked_database_counts_once(tmp_path: Path) -> None:
    store, lock = locked_store(tmp_path)
    try:
        g = group()
        ids = store.accept(g, [NewTask("f", "p")] * 2, str(uuid.uuid4()), []).result()
        attempts: list[int] = []
        second, unlocked = threading.Event(), threading.Event()

        def probe(tx: Transaction) -> None:  # first in the batch: sees every attempt
            attempts.append(len(attempts) + 1)
            if len(attempts) == 2:
                second.set()
                assert unlocked.wait(60)
            tx.after_commit(lambda: ran.append(len(attempts)))

        ran: list[int] = []
        release = hold_writer(store)
        lock.execute("BEGIN IMMEDIATE")  # the first attempt meets a locked database
        probed = store.write(probe)
        done = store.complete([Completion(TaskState.SUCCESS, "00\nx", task_id=t) for t in ids])
        accepted = store.accept(g, [NewTask("f", "p")] * 3, str(uuid.uuid4()), [])
        quarantined = store.quarantine([("q", "garbled", b"\x00")])
        release.set()
        assert second.wait(60)
        lock.execute("ROLLBACK")
        unlocked.set()
        probed.result()
        events, _ = done.result()
        assert len(accepted.result()) == 3 and quarantined.result() is None
        assert attempts == [1, 2] and ran == [2]
        assert [e.seq for e in events] == [1, 2]  # numbered afresh by the retry
        assert store.state_counts() == {TaskState.SUCCESS: 2, TaskState.ACCEPTED: 3}
        assert store.quarantine_count() == 1
        assert (store.state_counts(), store.group_count()) == truth(store)
    finally:
        lock.close()
        store.close()


def test_a_batch_the_database_refuses_changes_no_count(tmp_path: Path) -> None:
    store, lock = locked_store(tmp_path)
    try:
        ran: list[str] = []

        def counted(tx: Transaction) -> None:
            tx.count(TaskState.ACCEPTED, 7)
            tx.after_commit(lambda: ran.append("after the commit"))
            tx.conn.execute(insert(META).values(key="probe", value="never"))

        lock.execute("BEGIN IMMEDIATE")  # held through every attempt
        with pytest.raises(StoreUnavailable, match="database unavailable"):
            store.write(counted).result()
        lock.execute("ROLLBACK")
        assert ran == [] and store.state_counts() == {}
        g = group()
        store.accept(g, [NewTask("f", "p")], str(uuid.uuid4()), []).result()  # writes go on
        assert store.state_counts() == {TaskState.ACCEPTED: 1}
        assert (store.state_counts(), store.group_count()) == truth(store)
    finally:
        lock.close()
        store.close()


def test_results_of_tasks_known_as_submitted_are_checked_by_their_state(store: Store) -> None:
    """A completion naming task and group (the Globus upstream's map) skips the lookup, never
    the truth: a task already finished, still accepted, or released is handled as any other."""
    g, other = group(), group()
    ids = store.accept(g, [NewTask("f", "p")] * 5, str(uuid.uuid4()), []).result()
    gone = store.accept(other, [NewTask("f", "p")], str(uuid.uuid4()), []).result()
    up = {t: str(uuid.uuid4()) for t in ids[:4] + gone}
    store.mark_submitted(up).result()
    store.release(other.id).result()

    def known(task_id: str, state: TaskState = TaskState.SUCCESS) -> Completion:
        return Completion(
            state, "r", task_id=task_id, upstream_task_id=up.get(task_id), group_id=g.id
        )

    first, _ = store.complete([known(ids[0]), known(ids[1], TaskState.FAILED)]).result()
    assert [(e.task_id, e.group_id, e.state) for e in first] == [
        (ids[0], g.id, TaskState.SUCCESS),
        (ids[1], g.id, TaskState.FAILED),
    ]
    assert first[0].upstream_task_id == up[ids[0]]
    # one batch: a duplicate of a finished task, a task still ACCEPTED (the claim is
    # wrong: it is looked up), a released task, and one that is right
    late = [known(ids[0]), known(ids[4]), known(gone[0]), known(ids[2])]
    events, unknown = store.complete(late).result()
    assert sorted(e.task_id for e in events) == sorted([ids[4], ids[2]])
    assert [c.task_id for c in unknown] == [gone[0]]
    seqs = [e.seq for e in first + events]
    assert len(set(seqs)) == len(seqs) and min(seqs[2:]) > max(seqs[:2])
    assert (store.state_counts(), store.group_count()) == truth(store)
    assert store.state_counts() == {
        TaskState.SUBMITTED: 1,
        TaskState.SUCCESS: 3,
        TaskState.FAILED: 1,
    }
    stored = {e.task_id: e for e in store.tasks(ids)}
    assert stored[ids[0]].state == TaskState.SUCCESS and stored[ids[0]].seq == first[0].seq


def test_results_of_tasks_known_as_accepted_move_the_counts_out_of_accepted(store: Store) -> None:
    """A cluster endpoint names its tasks in flight as ACCEPTED in their group: finished
    without a lookup, counted out of ACCEPTED; a wrong claim is looked up as any other."""
    g = group()
    ids = store.accept(g, [NewTask("f", "p")] * 3, str(uuid.uuid4()), []).result()
    store.mark_submitted({ids[2]: str(uuid.uuid4())}, g.id).result()

    def known(task_id: str) -> Completion:
        was = TaskState.ACCEPTED
        return Completion(TaskState.SUCCESS, "r", task_id=task_id, group_id=g.id, was=was)

    events, unknown = store.complete([known(ids[0]), known(ids[2])]).result()
    assert [e.task_id for e in events] == [ids[0], ids[2]] and unknown == []
    again, _ = store.complete([known(ids[0])]).result()  # a duplicate changes nothing
    assert again == []
    assert store.state_counts() == {TaskState.ACCEPTED: 1, TaskState.SUCCESS: 2}
    assert (store.state_counts(), store.group_count()) == truth(store)
