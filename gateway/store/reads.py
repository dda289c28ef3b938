"""Every read of the daemon, as a function of a connection.

Reads run on pooled connections of their own, on the caller's thread (WAL
lets them proceed beside the writer), never through the writer's queue.
Rows are read by column name. ROW_ACCESS: on the hot paths (a page of
unfinished tasks, events, payloads) a row is unpacked into named variables
beside its query's column list, since SQLAlchemy's Row attribute access costs
about 1 us a field (it doubled the time of a 10,000-task page); elsewhere
rows are read as ``row.column``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, and_, case, func, or_, select

from fxgate_contract.states import UNFINISHED, TaskState
from gateway.store.counters import GROUPS_KEY, QUARANTINE_KEY, CountKey
from gateway.store.options import SharedOptions
from gateway.store.records import (
    FunctionRecord,
    GroupInfo,
    GroupSummary,
    PendingTask,
    TaskEvent,
    TaskOptions,
    TaskSummary,
)
from gateway.store.sql import AnyRow, chunks
from gateway.store.tables import FUNCTIONS, GROUPS, QUARANTINE, REGISTRATIONS, TASK_OPTIONS, TASKS

EVENT_COLUMNS = (
    TASKS.c.id,
    TASKS.c.group_id,
    TASKS.c.state,
    TASKS.c.data,
    TASKS.c.error_code,
    TASKS.c.error_message,
    TASKS.c.exception,
    TASKS.c.upstream_task_id,
    TASKS.c.completed_at,
    TASKS.c.seq,
)
GROUP_COLUMNS = (
    GROUPS.c.id,
    GROUPS.c.upstream,
    GROUPS.c.endpoint_id,
    GROUPS.c.upstream_group_id,
    GROUPS.c.label,
)


def _event(row: AnyRow) -> TaskEvent:
    """A TaskEvent from a row of EVENT_COLUMNS (unpacked by name: see ROW_ACCESS)."""
    (
        task_id,
        group_id,
        state,
        data,
        error_code,
        error_message,
        exception,
        upstream_task_id,
        completed_at,
        seq,
    ) = row
    return TaskEvent(
        task_id=task_id,
        group_id=group_id,
        state=TaskState(state),
        data=data or "",
        error_code=error_code,
        error_message=error_message,
        exception=exception,
        upstream_task_id=upstream_task_id or "",
        completed_at=completed_at or 0.0,
        seq=seq or 0,
    )


def _group(r: AnyRow) -> GroupInfo:
    """A GroupInfo from a row of GROUP_COLUMNS."""
    return GroupInfo(
        id=r.id,
        upstream=r.upstream,
        endpoint_id=r.endpoint_id,
        upstream_group_id=r.upstream_group_id,
        label=r.label or "",
    )


def _serializers(stored: str) -> tuple[str, ...]:
    """The result serializers of a task as stored: one import path per line."""
    return tuple(s for s in stored.split("\n") if s)


def opening_state(conn: Connection) -> tuple[int, dict[CountKey, int]]:
    """(the last completion seq, the status counts), as the store opens."""
    seq = conn.execute(select(func.max(TASKS.c.seq))).scalar() or 0
    by_upstream = (
        select(GROUPS.c.upstream, TASKS.c.state, func.count().label("n"))
        .select_from(TASKS.join(GROUPS, TASKS.c.group_id == GROUPS.c.id))
        .group_by(GROUPS.c.upstream, TASKS.c.state)
    )
    counts: dict[CountKey, int] = {
        (r.upstream, TaskState(r.state)): r.n for r in conn.execute(by_upstream)
    }
    counts[GROUPS_KEY] = conn.execute(select(func.count()).select_from(GROUPS)).scalar_one()
    counts[QUARANTINE_KEY] = conn.execute(select(func.count()).select_from(QUARANTINE)).scalar_one()
    return int(seq), counts


def group(conn: Connection, group_id: str) -> GroupInfo | None:
    """One task group, None if unknown."""
    row = conn.execute(select(*GROUP_COLUMNS).where(GROUPS.c.id == group_id)).first()
    return _group(row) if row else None


def group_by_upstream_id(conn: Connection, upstream_group_id: str) -> GroupInfo | None:
    """The group the upstream knows by this id, None if none (the column is indexed)."""
    row = conn.execute(
        select(*GROUP_COLUMNS).where(GROUPS.c.upstream_group_id == upstream_group_id)
    ).first()
    return _group(row) if row else None


def groups_with_upstream_ids(conn: Connection, upstream: str) -> list[GroupInfo]:
    """Groups of one upstream that have unfinished tasks."""
    open_groups = select(TASKS.c.group_id).where(TASKS.c.state.in_(UNFINISHED)).distinct()
    rows = conn.execute(
        select(*GROUP_COLUMNS)
        .where(GROUPS.c.upstream == upstream)
        .where(GROUPS.c.id.in_(open_groups))
    )
    return [_group(r) for r in rows]


def function_code(conn: Connection, function_id: str) -> FunctionRecord | None:
    """A stored function."""
    columns = (FUNCTIONS.c.name, FUNCTIONS.c.code, FUNCTIONS.c.description, FUNCTIONS.c.meta)
    row = conn.execute(select(*columns).where(FUNCTIONS.c.id == function_id)).first()
    return FunctionRecord(*row) if row else None


def registration(conn: Connection, function_id: str, upstream_key: str) -> str | None:
    """A function's id at one upstream, if it was registered there."""
    return conn.execute(
        select(REGISTRATIONS.c.upstream_function_id)
        .where(REGISTRATIONS.c.function_id == function_id)
        .where(REGISTRATIONS.c.upstream_key == upstream_key)
    ).scalar()


def task_states(conn: Connection, group_id: str) -> list[tuple[str, int]]:
    """(task id, state) of every task in a group, in the order they were accepted.

    Batches in commit order, tasks in submit order: within a batch the keys
    "<submit_id>:<index>" share a prefix, so ordering by length, then text,
    puts ":2" before ":10".
    """
    rows = conn.execute(
        select(TASKS.c.id, TASKS.c.state)
        .where(TASKS.c.group_id == group_id)
        .order_by(TASKS.c.created_at, func.length(TASKS.c.submit_key), TASKS.c.submit_key)
    )
    return [(task_id, state) for task_id, state in rows]  # a group may hold millions


def events_after(conn: Connection, group_id: str, after_seq: int, limit: int) -> list[TaskEvent]:
    """Finished tasks of a group with seq > after_seq, oldest first."""
    query = (
        select(*EVENT_COLUMNS)
        .where(TASKS.c.group_id == group_id)
        .where(TASKS.c.seq > after_seq)
        .order_by(TASKS.c.seq)
        .limit(limit)
    )
    return [_event(r) for r in conn.execute(query)]


def tasks(conn: Connection, task_ids: Sequence[str]) -> list[TaskEvent]:
    """The stored state of given tasks (unfinished ones with empty result fields)."""
    out: list[TaskEvent] = []
    for part in chunks(task_ids):
        out += [_event(r) for r in conn.execute(select(*EVENT_COLUMNS).where(TASKS.c.id.in_(part)))]
    return out


def tasks_by_upstream_id(conn: Connection, upstream_task_ids: Sequence[str]) -> list[TaskEvent]:
    """The stored state of tasks named by their upstream ids (a unique index)."""
    out: list[TaskEvent] = []
    for part in chunks(upstream_task_ids):
        query = select(*EVENT_COLUMNS).where(TASKS.c.upstream_task_id.in_(part))
        out += [_event(r) for r in conn.execute(query)]
    return out


def submitted_events(conn: Connection, group_id: str, after_id: str, limit: int) -> list[TaskEvent]:
    """SUBMITTED tasks of a group as events (seq 0), in pages by task id."""
    query = (
        select(*EVENT_COLUMNS)
        .where(TASKS.c.group_id == group_id)
        .where(TASKS.c.state == int(TaskState.SUBMITTED))
        .where(TASKS.c.id > after_id)
        .order_by(TASKS.c.id)
        .limit(limit)
    )
    return [_event(r) for r in conn.execute(query)]


def running_events(conn: Connection, group_id: str, after_id: str, limit: int) -> list[TaskEvent]:
    """RUNNING tasks of a group as events (seq 0), in pages by task id.

    Found through the state index (a few running tasks in the whole store), not
    the group's (SQLite's planner, without statistics, may pick the group's and
    read every task of a million-task group).
    """
    query = (
        select(*EVENT_COLUMNS)
        .with_hint(TASKS, "INDEXED BY ix_tasks_state", "sqlite")
        .where(TASKS.c.state == int(TaskState.RUNNING))
        .where(TASKS.c.group_id == group_id)
        .where(TASKS.c.id > after_id)
        .order_by(TASKS.c.id)
        .limit(limit)
    )
    return [_event(r) for r in conn.execute(query)]


def unfinished_ids(
    conn: Connection, group_id: str, after_id: str, limit: int
) -> tuple[int, list[str]]:
    """(how many tasks of a group are unfinished, a page of their ids after after_id)."""
    open_tasks = (
        select(TASKS.c.id).where(TASKS.c.group_id == group_id).where(TASKS.c.state.in_(UNFINISHED))
    )
    count = conn.execute(select(func.count()).select_from(open_tasks.subquery())).scalar_one()
    ids = conn.execute(
        open_tasks.where(TASKS.c.id > after_id).order_by(TASKS.c.id).limit(limit)
    ).scalars()
    return int(count), list(ids)


def upstream_task_ids(conn: Connection, group_id: str) -> dict[str, str]:
    """task id -> upstream task id, for the tasks of a group the upstream has named."""
    rows = conn.execute(
        select(TASKS.c.id, TASKS.c.upstream_task_id)
        .where(TASKS.c.group_id == group_id)
        .where(TASKS.c.upstream_task_id.is_not(None))
    )
    return {task_id: upstream_id for task_id, upstream_id in rows}


def _options(conn: Connection, keys: set[str], shared: SharedOptions) -> dict[str, TaskOptions]:
    """The option sets of a page of tasks by key, each read from the table once per process."""
    found = {key: options for key in keys if (options := shared.get(key)) is not None}
    missing = sorted(keys - found.keys())
    query = select(
        TASK_OPTIONS.c.key,
        TASK_OPTIONS.c.user_endpoint_config,
        TASK_OPTIONS.c.resource_specification,
        TASK_OPTIONS.c.user_runtime,
    )
    for part in chunks(missing):
        for key, config, resources, runtime in conn.execute(
            query.where(TASK_OPTIONS.c.key.in_(part))
        ):
            found[key] = shared.share(key, TaskOptions(config, resources, runtime))
    return found


def unfinished(
    conn: Connection, upstream: str, after_id: str, limit: int, option_sets: SharedOptions
) -> list[PendingTask]:
    """Unfinished tasks of one upstream's groups, in pages by task id, without payloads."""
    rows = conn.execute(
        select(
            TASKS.c.id,
            TASKS.c.group_id,
            TASKS.c.endpoint_id,
            TASKS.c.function_id,
            TASKS.c.result_serializers,
            TASKS.c.state,
            TASKS.c.upstream_task_id,
            func.length(TASKS.c.payload).label("payload_size"),
            TASKS.c.options_key,
        )
        .join(GROUPS, GROUPS.c.id == TASKS.c.group_id)
        .where(GROUPS.c.upstream == upstream)
        .where(TASKS.c.state.in_(UNFINISHED))
        .where(TASKS.c.id > after_id)
        .order_by(TASKS.c.id)
        .limit(limit)
    ).all()
    shared: dict[str, str] = {}  # one object per distinct group, endpoint, function
    serializers: dict[str, tuple[str, ...]] = {}
    options = _options(conn, {row[-1] for row in rows}, option_sets)
    return [
        PendingTask(
            task_id,
            shared.setdefault(group_id, group_id),
            shared.setdefault(endpoint_id, endpoint_id),
            shared.setdefault(function_id, function_id),
            None,
            serializers.get(stored) or serializers.setdefault(stored, _serializers(stored)),
            TaskState(state),
            upstream_task_id,
            payload_size or 0,
            options[options_key],
        )
        for (
            task_id,
            group_id,
            endpoint_id,
            function_id,
            stored,
            state,
            upstream_task_id,
            payload_size,
            options_key,
        ) in rows
    ]


def payloads(conn: Connection, task_ids: Sequence[str]) -> dict[str, str]:
    """Stored payloads of tasks (task id -> payload); a finished task has none."""
    found: dict[str, str] = {}
    for part in chunks(task_ids):
        query = select(TASKS.c.id, TASKS.c.payload).where(TASKS.c.id.in_(part))
        found.update((tid, payload) for tid, payload in conn.execute(query) if payload is not None)
    return found


def group_page(
    conn: Connection, limit: int, before: tuple[float, str] | None, only: str = ""
) -> list[GroupSummary]:
    """Groups newest first (created_at, then id, descending), after the key `before`;
    `only`: that one group.

    Their tasks are counted by state in one statement for the page (the tasks
    table's (group_id, seq) index leads with group_id), which also reads each
    group's highest seq: counts and seq are one snapshot.
    """
    query = select(*GROUP_COLUMNS, GROUPS.c.created_at, GROUPS.c.updated_at)
    if only:
        query = query.where(GROUPS.c.id == only)
    if before is not None:
        created, gid = before
        query = query.where(
            or_(
                GROUPS.c.created_at < created,
                and_(GROUPS.c.created_at == created, GROUPS.c.id < gid),
            )
        )
    rows = conn.execute(
        query.order_by(GROUPS.c.created_at.desc(), GROUPS.c.id.desc()).limit(limit)
    ).all()
    counts: dict[str, dict[TaskState, int]] = {r.id: {} for r in rows}
    last: dict[str, int] = {}
    for part in chunks(list(counts)):
        for gid, state, n, seq in conn.execute(
            select(TASKS.c.group_id, TASKS.c.state, func.count(), func.max(TASKS.c.seq))
            .where(TASKS.c.group_id.in_(part))
            .group_by(TASKS.c.group_id, TASKS.c.state)
        ):
            counts[gid][TaskState(state)] = n
            last[gid] = max(last.get(gid, 0), seq or 0)
    return [
        GroupSummary(_group(r), r.created_at, r.updated_at, counts[r.id], last.get(r.id, 0))
        for r in rows
    ]


def task_page(
    conn: Connection, group_id: str, state: TaskState | None, after_id: str, limit: int
) -> list[TaskSummary]:
    """A group's tasks by task id after after_id, of one state or all; no results read."""
    query = select(
        TASKS.c.id,
        TASKS.c.state,
        TASKS.c.upstream_task_id,
        TASKS.c.created_at,
        TASKS.c.completed_at,
        TASKS.c.error_code,
        TASKS.c.error_message,
    ).where(TASKS.c.group_id == group_id)
    if state is not None:
        query = query.where(TASKS.c.state == int(state))
    rows = conn.execute(query.where(TASKS.c.id > after_id).order_by(TASKS.c.id).limit(limit))
    return [
        TaskSummary(
            r.id,
            TaskState(r.state),
            r.upstream_task_id or "",
            r.created_at,
            r.completed_at or 0.0,
            r.error_code,
            r.error_message,
        )
        for r in rows
    ]


def expirable(conn: Connection, older_than: float) -> dict[str, int]:
    """Groups untouched since older_than with no unfinished task: {group id: task count}.

    What the retention sweep releases (writes.expire), and what a dry run reports.
    """
    unfinished = func.sum(case((TASKS.c.state.in_(UNFINISHED), 1), else_=0))
    rows = conn.execute(
        select(GROUPS.c.id, func.count(TASKS.c.id))
        .select_from(GROUPS.outerjoin(TASKS, TASKS.c.group_id == GROUPS.c.id))
        .where(GROUPS.c.updated_at < older_than)
        .group_by(GROUPS.c.id)
        .having(func.coalesce(unfinished, 0) == 0)
        .order_by(GROUPS.c.id)
    )
    return {gid: n for gid, n in rows}
