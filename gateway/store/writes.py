"""Every write of the daemon, as a function of the writer's Transaction.

Each runs on the store-writer thread inside a batch's transaction (see
writer.py): it changes rows through ``tx.conn`` and says through ``tx.count``
how the status counts move when the batch commits.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from operator import attrgetter

from sqlalchemy import bindparam, delete, func, insert, literal_column, null, select, update

from fxgate_contract.states import UNFINISHED, TaskState
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.store import reads
from gateway.store.counters import GROUPS_KEY, QUARANTINE_KEY
from gateway.store.group_upstreams import NO_UPSTREAM, GroupUpstreams
from gateway.store.records import (
    AcceptedIds,
    Completion,
    FunctionRecord,
    GroupInfo,
    NewTask,
    TaskEvent,
    TaskOptions,
)
from gateway.store.sql import CHUNK, AnyRow, binds, chunks
from gateway.store.tables import (
    FUNCTIONS,
    GROUPS,
    META,
    QUARANTINE,
    REGISTRATIONS,
    TASK_OPTIONS,
    TASKS,
)
from gateway.store.writer import Transaction

# The hot writes, compiled once (Transaction.executemany) and fed plain tuples
# in the order of their names.
ACCEPT_COLUMNS = (
    "id",
    "group_id",
    "endpoint_id",
    "function_id",
    "payload",
    "result_serializers",
    "options_key",
    "state",
    "submit_key",
    "error_code",
    "error_message",
    "exception",
    "created_at",
)
ACCEPT_SQL = insert(TASKS).values(**binds(*ACCEPT_COLUMNS))
# A task the upstream took: its upstream id (only while it is still ACCEPTED).
SUBMITTED_COLUMNS = ("upstream_task_id", "b_id")
SUBMITTED_SQL = (
    update(TASKS)
    .where(TASKS.c.id == bindparam("b_id"))
    .where(TASKS.c.state == literal_column(str(int(TaskState.ACCEPTED))))
    .values(
        upstream_task_id=bindparam("upstream_task_id"),
        state=literal_column(str(int(TaskState.SUBMITTED))),
    )
)
# A task its upstream started (the local pool): only while it is still ACCEPTED, so a
# late write never turns a finished task (or one run again after a restart) back.
RUNNING_COLUMNS = ("b_id",)
RUNNING_SQL = (
    update(TASKS)
    .where(TASKS.c.id == bindparam("b_id"))
    .where(TASKS.c.state == literal_column(str(int(TaskState.ACCEPTED))))
    .values(state=literal_column(str(int(TaskState.RUNNING))))
)
# A finished task: its result, state and place in the completion order.
COMPLETE_COLUMNS = (
    "state",
    "data",
    "error_code",
    "error_message",
    "exception",
    "completed_at",
    "seq",
    "b_id",
)
COMPLETE_SQL = (
    update(TASKS)
    .where(TASKS.c.id == bindparam("b_id"))
    .values(**binds(*COMPLETE_COLUMNS[:-1]), payload=null())
)
# The same for a task an upstream named as in a state (b_was) in a known group:
# the condition on its state makes that claim exact (a task already finished, or
# released, is not changed; complete() then looks at it the ordinary way).
COMPLETE_KNOWN_COLUMNS = (*COMPLETE_COLUMNS, "b_was")
COMPLETE_KNOWN_SQL = COMPLETE_SQL.where(TASKS.c.state == bindparam("b_was"))
# What complete() reads of a task to match a completion to it, and the same
# as a tuple: unpacked by name, as Row attribute access costs ~1 us a field
# (it doubled the time of complete() for 10,000 results).
MATCH_COLUMNS = (TASKS.c.id, TASKS.c.group_id, TASKS.c.state, TASKS.c.upstream_task_id)
MATCH_BY_ID_SQL = select(*MATCH_COLUMNS).where(TASKS.c.id.in_(bindparam("b_ids", expanding=True)))
MATCH_BY_UPSTREAM_ID_SQL = select(*MATCH_COLUMNS).where(
    TASKS.c.upstream_task_id.in_(bindparam("b_ids", expanding=True))
)
# The lookups of every accept, built once: a statement built per call costs more in
# SQLAlchemy than SQLite takes to run it, which one task at a time pays in full.
RETRY_OF_SQL = select(TASKS.c.id).where(TASKS.c.submit_key == bindparam("b_key"))
# A group's upstream, marking it used now: one statement where a lookup and an
# update were two.
TOUCH_GROUP_SQL = (
    update(GROUPS)
    .where(GROUPS.c.id == bindparam("b_id"))
    .values(updated_at=bindparam("b_now"))
    .returning(GROUPS.c.upstream)
)
# An event's fields, read in C (map) when complete() counts by state and upstream.
GROUP_OF = attrgetter("group_id")
STATE_OF = attrgetter("state")
GROUP_AND_STATE_OF = attrgetter("group_id", "state")
Match = tuple[str, str, int, str | None]  # (task id, group id, state, upstream task id)


def meta_value(tx: Transaction, key: str, default: Callable[[], str]) -> str:
    """A stored fact, created with default() the first time it is asked for."""
    found = tx.conn.execute(select(META.c.value).where(META.c.key == key)).scalar()
    if found is not None:
        return str(found)
    value = default()
    tx.conn.execute(insert(META).values(key=key, value=value))
    return value


def register_function(tx: Transaction, function_id: str, function: FunctionRecord) -> None:
    """Store a function once; registering it again changes nothing."""
    exists = tx.conn.execute(select(FUNCTIONS.c.id).where(FUNCTIONS.c.id == function_id)).scalar()
    if exists is None:
        values = function._asdict()
        tx.conn.execute(insert(FUNCTIONS).values(id=function_id, created_at=time.time(), **values))


def accept(
    tx: Transaction,
    group: GroupInfo,
    tasks: Sequence[NewTask],
    submit_id: str,
    serializers: str,
    options: tuple[str, TaskOptions],
    stored_keys: set[str],
    groups: GroupUpstreams,
) -> AcceptedIds:
    """New tasks (and their group, if new); see Store.accept. options: (key, options);
    stored_keys: option keys known to be committed (the store-writer's own set)."""
    conn = tx.conn
    keys = [f"{submit_id}:{i}" for i in range(len(tasks))]
    first = conn.execute(RETRY_OF_SQL, {"b_key": keys[0]}).scalar()
    if first is not None:  # a retry of a batch committed before
        return _retried(tx, group, tasks, submit_id, keys, options[0])
    now = time.time()
    options_key = _store_options(tx, *options, now, stored_keys)
    tx.count((group.upstream, TaskState.ACCEPTED), len(tasks))
    known = conn.execute(TOUCH_GROUP_SQL, {"b_id": group.id, "b_now": now}).scalar()
    if known is not None and known != group.upstream:
        raise InvalidRequest(
            f"task group {group.id} belongs to the {known} upstream; endpoint "
            f"{group.endpoint_id} is on the {group.upstream} upstream"
        )
    tx.after_commit(lambda: groups.remember(group.id, group.upstream))
    if known is None:
        tx.count(GROUPS_KEY)
        conn.execute(
            insert(GROUPS).values(
                id=group.id,
                upstream=group.upstream,
                endpoint_id=group.endpoint_id,
                created_at=now,
                updated_at=now,
                label=group.label or None,
            )
        )
    ids = AcceptedIds(str(uuid.uuid4()) for _ in tasks)
    accepted = int(TaskState.ACCEPTED)
    tx.executemany(
        ACCEPT_SQL,
        ACCEPT_COLUMNS,
        [
            (tid, group.id, group.endpoint_id, t.function_id, t.payload, serializers)
            + (options_key, accepted, key, "", "", "", now)
            for tid, t, key in zip(ids, tasks, keys, strict=True)
        ],
    )
    return ids


def _store_options(
    tx: Transaction, key: str, options: TaskOptions, now: float, stored_keys: set[str]
) -> str:
    """Store an option set once (a lookup only for a set not yet known committed); its key."""
    if not key or key in stored_keys:
        return key
    tx.after_commit(lambda: stored_keys.add(key))
    if tx.conn.execute(select(TASK_OPTIONS.c.key).where(TASK_OPTIONS.c.key == key)).first() is None:
        tx.conn.execute(
            insert(TASK_OPTIONS).values(
                key=key,
                user_endpoint_config=options.user_endpoint_config,
                resource_specification=options.resource_specification,
                user_runtime=options.user_runtime,
                created_at=now,
            )
        )
    return key


def _retried(
    tx: Transaction,
    group: GroupInfo,
    tasks: Sequence[NewTask],
    submit_id: str,
    keys: list[str],
    options_key: str,
) -> AcceptedIds:
    """The task ids of an earlier batch with this submit_id, if this is an exact retry."""
    stored: dict[str, AnyRow] = {}  # submit key -> (id, group_id, function_id, options_key)
    query = select(
        TASKS.c.submit_key, TASKS.c.id, TASKS.c.group_id, TASKS.c.function_id, TASKS.c.options_key
    )
    for part in chunks([*keys, f"{submit_id}:{len(keys)}"]):
        for row in tx.conn.execute(query.where(TASKS.c.submit_key.in_(part))):
            stored[row.submit_key] = row
    first_group = stored[keys[0]].group_id
    same = len(stored) == len(keys) and all(
        k in stored
        and stored[k].group_id == group.id
        and stored[k].function_id == t.function_id
        and stored[k].options_key == options_key
        for k, t in zip(keys, tasks, strict=True)
    )
    if not same:
        raise InvalidRequest(
            f"submit_id {submit_id} was already used for another batch (in task group "
            f"{first_group}); a retry must repeat it exactly (same task group, tasks, "
            "functions and options), and a new batch needs a new submit_id"
        )
    ids = AcceptedIds(stored[k].id for k in keys)
    ids.retried = True
    return ids


def _matching_rows(
    tx: Transaction, completions: Sequence[Completion]
) -> tuple[dict[str, Match], dict[str, Match]]:
    """The stored tasks the completions name: (by task id, by upstream task id).

    A completion is matched by our task id when it has one, else by the
    upstream's, with one query per chunk of ids.
    """
    by_id: dict[str, Match] = {}
    by_upstream: dict[str, Match] = {}
    for part in chunks([c.task_id for c in completions if c.task_id]):
        rows = tx.conn.execute(MATCH_BY_ID_SQL, {"b_ids": part})
        by_id.update((task_id, (task_id, g, s, u)) for task_id, g, s, u in rows)
    wanted = [c.upstream_task_id for c in completions if not c.task_id and c.upstream_task_id]
    for part in chunks(wanted):
        rows = tx.conn.execute(MATCH_BY_UPSTREAM_ID_SQL, {"b_ids": part})
        by_upstream.update((u, (task_id, g, s, u)) for task_id, g, s, u in rows)
    return by_id, by_upstream


def complete(
    tx: Transaction, completions: Sequence[Completion], groups: GroupUpstreams
) -> tuple[list[TaskEvent], list[Completion]]:
    """Terminal states of tasks; see Store.complete."""
    now = time.time()
    events: list[TaskEvent] = []
    known = [c for c in completions if c.task_id and c.group_id]
    rest = [c for c in completions if not (c.task_id and c.group_id)]
    left: Counter[tuple[str, int]] = Counter()  # (group id, state) the finished tasks left
    if known:
        rest += _complete_known(tx, known, now, events, left)
    unknown = _complete_looked_up(tx, rest, now, events, left) if rest else []
    if events:
        _count_moves(tx, groups, events, left)
    return events, unknown


def _count_moves(
    tx: Transaction,
    groups: GroupUpstreams,
    events: list[TaskEvent],
    left: Counter[tuple[str, int]],
) -> None:
    """Count finished tasks out of the states they left and into their new ones, under
    their groups' upstream; per event only when one call finished several upstreams' tasks.

    The results of one upstream (the usual call) cost a set of group ids and a
    count by state: ~0.2 us a result, where a count by (group, state) cost 1 us.
    """
    upstream = groups.of(tx.conn, set(map(GROUP_OF, events)))
    names = set(upstream.values())
    if len(names) == 1:
        name = names.pop()
        for (_, state), n in left.items():
            tx.count((name, TaskState(state)), -n)
        for state, n in Counter(map(STATE_OF, events)).items():
            tx.count((name, state), n)
        return
    for (group_id, state), n in left.items():
        tx.count((upstream[group_id], TaskState(state)), -n)
    for (group_id, state), n in Counter(map(GROUP_AND_STATE_OF, events)).items():
        tx.count((upstream[group_id], state), n)


def _event(c: Completion, task_id: str, group_id: str, now: float, seq: int) -> TaskEvent:
    return TaskEvent(
        task_id,
        group_id,
        c.state,
        c.data,
        c.error_code,
        c.error_message,
        c.exception,
        c.upstream_task_id or "",
        c.completed_at or now,
        seq,
    )


def _rows(events: Sequence[TaskEvent]) -> list[tuple[object, ...]]:
    return [
        (int(e.state), e.data, e.error_code, e.error_message, e.exception)
        + (e.completed_at, e.seq, e.task_id)
        for e in events
    ]


def _complete_known(
    tx: Transaction,
    known: Sequence[Completion],
    now: float,
    events: list[TaskEvent],
    left: Counter[tuple[str, int]],
) -> list[Completion]:
    """Finish tasks an upstream named as in a state (`was`) in a group, without a lookup.

    One executemany whose condition on the state checks the upstream's claim;
    when it changed fewer rows than it was given (a duplicate result, a
    released group), the rows that carry this batch's seq are the ones it
    finished, and the others are returned to be looked up. Their seqs are
    left unused: the completion order has gaps, never repeats.
    """
    mine = [_event(c, c.task_id or "", c.group_id or "", now, tx.next_seq()) for c in known]
    rows = [row + (int(c.was),) for row, c in zip(_rows(mine), known, strict=True)]
    changed = tx.executemany(COMPLETE_KNOWN_SQL, COMPLETE_KNOWN_COLUMNS, rows)
    done = [True] * len(mine)
    if changed != len(mine):
        seqs: dict[str, int | None] = {}
        for part in chunks([e.task_id for e in mine]):
            found = tx.conn.execute(select(TASKS.c.id, TASKS.c.seq).where(TASKS.c.id.in_(part)))
            seqs.update((task_id, seq) for task_id, seq in found)
        done = [seqs.get(e.task_id) == e.seq for e in mine]
    missed = []
    for c, e, ok in zip(known, mine, done, strict=True):
        if ok:
            events.append(e)
            left[(e.group_id, c.was)] += 1
        else:
            missed.append(replace(c, group_id=None))
    return missed


def _complete_looked_up(
    tx: Transaction,
    completions: Sequence[Completion],
    now: float,
    events: list[TaskEvent],
    left: Counter[tuple[str, int]],
) -> list[Completion]:
    """Finish tasks found by task id or upstream task id; the completions that name none.
    `left` counts the (group, state) pairs the finished tasks leave."""
    by_id, by_upstream = _matching_rows(tx, completions)
    mine: list[TaskEvent] = []
    unknown: list[Completion] = []
    done = {e.task_id for e in events}  # tasks an earlier completion of this batch finished
    for c in completions:
        match = by_id.get(c.task_id) if c.task_id else by_upstream.get(c.upstream_task_id or "")
        if match is None:
            unknown.append(c)
            continue
        task_id, group_id, state, _ = match
        if state >= TaskState.SUCCESS or task_id in done:  # already terminal: a duplicate
            continue
        done.add(task_id)
        left[(group_id, state)] += 1
        mine.append(_event(c, task_id, group_id, now, tx.next_seq()))
    if mine:
        tx.executemany(COMPLETE_SQL, COMPLETE_COLUMNS, _rows(mine))
    events += mine
    return unknown


def mark_submitted(
    tx: Transaction, upstream_ids: dict[str, str], groups: GroupUpstreams, group_id: str
) -> None:
    """The upstream's ids of tasks it took (task id -> upstream task id).

    The tasks are one upstream's (an upstream names only its own): their group
    (`group_id`, or when empty the group of one of them, read once) says which
    upstream's counts move.
    """
    moved = tx.executemany(
        SUBMITTED_SQL, SUBMITTED_COLUMNS, [(u, t) for t, u in upstream_ids.items()]
    )
    if not moved:
        return
    if not group_id:
        first = list(upstream_ids)[:CHUNK]
        group_id = (
            tx.conn.execute(select(TASKS.c.group_id).where(TASKS.c.id.in_(first)).limit(1)).scalar()
            or ""
        )
    upstream = groups.of(tx.conn, [group_id])[group_id] if group_id else NO_UPSTREAM
    tx.count((upstream, TaskState.ACCEPTED), -moved)
    tx.count((upstream, TaskState.SUBMITTED), moved)


def mark_running(tx: Transaction, started: dict[str, str], groups: GroupUpstreams) -> int:
    """Tasks one upstream started (task id -> group id), ACCEPTED -> RUNNING; the count
    that moved. Their first group says which upstream's counts move."""
    moved = tx.executemany(RUNNING_SQL, RUNNING_COLUMNS, [(t,) for t in started])
    if moved:
        group_id = next(iter(started.values()))
        upstream = groups.of(tx.conn, [group_id])[group_id]
        tx.count((upstream, TaskState.ACCEPTED), -moved)
        tx.count((upstream, TaskState.RUNNING), moved)
    return moved


def reset_running(tx: Transaction, upstream: str) -> int:
    """RUNNING tasks of one upstream's groups back to ACCEPTED (at start: none runs yet)."""
    groups = select(GROUPS.c.id).where(GROUPS.c.upstream == upstream)
    moved = tx.conn.execute(
        update(TASKS)
        .where(TASKS.c.state == int(TaskState.RUNNING))
        .where(TASKS.c.group_id.in_(groups))
        .values(state=int(TaskState.ACCEPTED))
    ).rowcount
    tx.count((upstream, TaskState.RUNNING), -moved)
    tx.count((upstream, TaskState.ACCEPTED), moved)
    return int(moved)


def set_upstream_group(tx: Transaction, group_id: str, upstream_group_id: str) -> None:
    """The id the upstream gave a group at its first submit."""
    tx.conn.execute(
        update(GROUPS).where(GROUPS.c.id == group_id).values(upstream_group_id=upstream_group_id)
    )


def save_registration(
    tx: Transaction, function_id: str, upstream_key: str, upstream_id: str
) -> None:
    """A function's id at one upstream, replacing an older one."""
    tx.conn.execute(
        delete(REGISTRATIONS)
        .where(REGISTRATIONS.c.function_id == function_id)
        .where(REGISTRATIONS.c.upstream_key == upstream_key)
    )
    tx.conn.execute(
        insert(REGISTRATIONS).values(
            function_id=function_id, upstream_key=upstream_key, upstream_function_id=upstream_id
        )
    )


def quarantine(tx: Transaction, rows: Sequence[tuple[str, str, bytes]], now: float) -> None:
    """Unusable broker messages: (source queue, reason, raw body)."""
    tx.count(QUARANTINE_KEY, len(rows))
    tx.conn.execute(
        insert(QUARANTINE),
        [{"source": s, "reason": r, "body": b, "received_at": now} for s, r, b in rows],
    )


def release(tx: Transaction, group_id: str, require_finished: bool, groups: GroupUpstreams) -> int:
    """Delete a group and its tasks; the count of tasks deleted.

    require_finished: refused (Conflict) while a task of it is unfinished; checked
    here, in the writer, so a task accepted into the group meanwhile is never
    deleted unseen.
    """
    found = tx.conn.execute(select(GROUPS.c.id).where(GROUPS.c.id == group_id)).scalar()
    if found is None:
        raise NotFound(f"unknown task group {group_id}")
    if not require_finished:
        return _delete_group(tx, group_id, groups)
    open_tasks = tx.conn.execute(
        select(func.count())
        .select_from(TASKS)
        .where(TASKS.c.group_id == group_id)
        .where(TASKS.c.state.in_(UNFINISHED))
    ).scalar_one()
    if open_tasks:
        raise Conflict(
            f"task group {group_id} still has {open_tasks} unfinished tasks; "
            "wait for them, cancel them, or release with cancel_unfinished"
        )
    return _delete_group(tx, group_id, groups)


def _delete_group(tx: Transaction, group_id: str, groups: GroupUpstreams) -> int:
    conn = tx.conn
    upstream = groups.of(conn, [group_id])[group_id]
    tx.after_commit(lambda: groups.forget(group_id))
    for row in conn.execute(
        select(TASKS.c.state, func.count().label("n"))
        .where(TASKS.c.group_id == group_id)
        .group_by(TASKS.c.state)
    ):
        tx.count((upstream, TaskState(row.state)), -row.n)
    tx.count(GROUPS_KEY, -1)
    count = conn.execute(delete(TASKS).where(TASKS.c.group_id == group_id)).rowcount
    conn.execute(delete(GROUPS).where(GROUPS.c.id == group_id))
    return int(count)


def expire(tx: Transaction, older_than: float, groups: GroupUpstreams) -> dict[str, int]:
    """Release every finished group untouched since older_than; {group id: tasks released}.

    The groups are those reads.expirable names, read in this transaction, so
    a submit committed before it keeps its group.
    """
    expirable = reads.expirable(tx.conn, older_than)
    return {gid: _delete_group(tx, gid, groups) for gid in expirable}
