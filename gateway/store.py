"""All SQL of the daemon: one writer thread that group-commits, and plain reads.

Durability is what makes "accepted" and "acknowledged" mean something, so
every write waits for a commit with ``synchronous=FULL`` on SQLite. To keep
that cheap, one writer thread drains every write waiting in its queue into a
single transaction (group commit): a thousand accepted tasks or results cost
one fsync, not a thousand. Reads run on their own connections (WAL lets them
proceed beside the writer).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from fxgate_contract.states import UNFINISHED, TaskState
from gateway.errors import InvalidRequest, NotFound, StoreUnavailable
from gateway.loglimit import throttled
from gateway.models import (
    FUNCTIONS,
    GROUPS,
    META,
    METADATA,
    QUARANTINE,
    REGISTRATIONS,
    TASKS,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteOp = Callable[[Connection], Any]


def _binds(*names: str) -> dict[str, Any]:
    return {n: bindparam(n) for n in names}


# The hot writes, compiled once (Store._executemany) and fed plain tuples in
# the order of their names: SQLAlchemy's per-row parameter handling would
# cost as much as SQLite's own work, and these columns need no conversion.
ACCEPT_COLUMNS = (
    "id",
    "group_id",
    "endpoint_id",
    "function_id",
    "payload",
    "result_serializers",
    "state",
    "submit_key",
    "error_code",
    "error_message",
    "exception",
    "created_at",
)
ACCEPT_SQL = insert(TASKS).values(**_binds(*ACCEPT_COLUMNS))
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
    .values(**_binds(*COMPLETE_COLUMNS[:-1]), payload=null())
)
# Submitted tasks whose upstream ids are kept in memory, at most.
SUBMITTED_CACHE = 200_000
GROUPS_KEY = "groups"
QUARANTINE_KEY = "quarantined"
# Attempts of a commit that met a locked or full database, before it fails.
RETRIES_WHEN_BUSY = 3
# SQLite allows 32766 bound parameters; stay far below it in IN (...) lists.
CHUNK = 900
# SQLite page cache per pooled connection (its default is 2 MB each).
PAGE_CACHE_KB = 512


@dataclass(slots=True)
class NewTask:
    """A task as a client submitted it, before it has an id."""

    function_id: str
    payload: str


@dataclass(frozen=True, slots=True)
class PendingTask:
    """What an upstream needs to run a task.

    payload None: not held in memory; the upstream reads it from the store
    (Store.payloads) just before it sends the task. payload_size is then its length.
    Slots, and ids shared between the tasks of a batch, because a queue may hold
    millions of these.
    """

    task_id: str
    group_id: str
    endpoint_id: str
    function_id: str
    payload: str | None
    result_serializers: tuple[str, ...]
    state: TaskState = TaskState.ACCEPTED
    upstream_task_id: str | None = None
    payload_size: int = 0

    def size(self) -> int:
        """The payload's length, whether or not it is held in memory."""
        return len(self.payload) if self.payload is not None else self.payload_size


@dataclass(slots=True)
class Completion:
    """A finished task as an upstream reports it, by our id or the upstream's."""

    state: TaskState
    data: str
    task_id: str | None = None
    upstream_task_id: str | None = None
    error_code: str = ""
    error_message: str = ""
    exception: str = ""
    completed_at: float | None = None


@dataclass(slots=True)
class TaskEvent:
    """A committed terminal state of one task, as watchers receive it."""

    task_id: str
    group_id: str
    state: TaskState
    data: str
    error_code: str
    error_message: str
    exception: str
    upstream_task_id: str
    completed_at: float
    seq: int


@dataclass(frozen=True)
class GroupInfo:
    id: str
    upstream: str
    endpoint_id: str
    upstream_group_id: str | None


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


def _event(r: Any) -> TaskEvent:
    """A TaskEvent from a row of EVENT_COLUMNS."""
    return TaskEvent(
        task_id=r[0],
        group_id=r[1],
        state=TaskState(r[2]),
        data=r[3] or "",
        error_code=r[4],
        error_message=r[5],
        exception=r[6],
        upstream_task_id=r[7] or "",
        completed_at=r[8] or 0.0,
        seq=r[9] or 0,
    )


def _serializers(stored: str) -> tuple[str, ...]:
    """The result serializers of a task as stored: one import path per line."""
    return tuple(s for s in stored.split("\n") if s)


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before Submit answers or a result is acked.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # Each pooled connection keeps its own page cache (SQLite's default is 2 MB):
        # up to 40 connections under many watchers. Pages not cached here come from
        # the OS page cache; the daemon's memory stays bounded.
        cur.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KB}")
        cur.close()

    return on_connect


class Store:
    """The daemon's durable state; every write goes through one writer thread."""

    def __init__(self, url: str, *, max_batch: int = 5000, busy_timeout_ms: int = 5000) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, pool_size=8, max_overflow=32)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas(busy_timeout_ms))
        self._queue: queue.SimpleQueue[tuple[WriteOp, Future[Any]] | None] = queue.SimpleQueue()
        self._max_batch = max_batch
        self._seq = 0
        # Counts by state (and of groups, quarantined messages) kept in step
        # with commits, so `fxgate status` is O(1) however large the store.
        self._counts: Counter[object] = Counter()
        self._delta: Counter[object] = Counter()
        self._on_commit: list[Callable[[], None]] = []  # memory changes a commit makes true
        self._counts_lock = threading.Lock()
        self._compiled: dict[int, Any] = {}
        # Submitted tasks by upstream id: (task id, group id, state, upstream id).
        # Only the writer thread touches it; every change of those tasks goes
        # through the writer, so an entry is exact while it is there.
        self._submitted: dict[str, tuple[str, str, int, str]] = {}
        self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)

    # ----------------------------------------------------------------- life
    def open(self) -> None:
        """Create the schema if needed and start the writer."""
        try:
            METADATA.create_all(self.engine)
            with self.engine.connect() as conn:
                self._seq = conn.execute(select(func.max(TASKS.c.seq))).scalar() or 0
                for state, n in conn.execute(
                    select(TASKS.c.state, func.count()).group_by(TASKS.c.state)
                ):
                    self._counts[TaskState(state)] = n
                self._counts[GROUPS_KEY] = conn.execute(
                    select(func.count()).select_from(GROUPS)
                ).scalar_one()
                self._counts[QUARANTINE_KEY] = conn.execute(
                    select(func.count()).select_from(QUARANTINE)
                ).scalar_one()
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"cannot open database {self.safe_url}: {exc}") from None
        self._writer.start()

    def close(self) -> None:
        """Finish queued writes, then stop the writer."""
        if self._writer.is_alive():
            self._queue.put(None)
            self._writer.join()
        self.engine.dispose()

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # --------------------------------------------------------------- writer
    def write(self, op: Callable[[Connection], T]) -> Future[T]:
        """Queue a write; its future resolves after the transaction committed."""
        fut: Future[T] = Future()
        self._queue.put((op, fut))
        return fut

    def write_wait(self, op: Callable[[Connection], T], timeout: float | None = 60.0) -> T:
        return self.write(op).result(timeout)

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit_batch(batch)
            if stop:
                return

    def _commit_batch(self, batch: list[tuple[WriteOp, Future[Any]]]) -> None:
        seq_before = self._seq
        for attempt in range(RETRIES_WHEN_BUSY + 1):
            self._delta = Counter()
            self._on_commit = []
            try:
                with self.engine.begin() as conn:
                    results = [op(conn) for op, _ in batch]
                with self._counts_lock:
                    self._counts.update(self._delta)
                for action in self._on_commit:
                    action()
                break
            except OperationalError as exc:  # locked, busy, full: transient, maybe
                self._seq = seq_before
                if attempt == RETRIES_WHEN_BUSY:
                    return self._fail_batch(batch, exc)
                throttled(log).warning("database unavailable (%s); retrying the commit", exc.orig)
                time.sleep(0.1 * 2**attempt)
            except Exception as exc:  # noqa: BLE001 - isolate the op that failed
                self._seq = seq_before
                return self._fail_batch(batch, exc)
        for (_, fut), result in zip(batch, results, strict=True):
            fut.set_result(result)

    def _fail_batch(self, batch: list[tuple[WriteOp, Future[Any]]], exc: Exception) -> None:
        """Fail every write of a batch the database refused; isolate a write that raised."""
        if len(batch) == 1 or isinstance(exc, OperationalError):
            for _, fut in batch:
                fut.set_exception(self._translate(exc))
            return
        for item in batch:
            self._commit_batch([item])

    @staticmethod
    def _translate(exc: Exception) -> Exception:
        if isinstance(exc, OperationalError):
            return StoreUnavailable(f"database unavailable: {exc.orig}")
        if isinstance(exc, SQLAlchemyError):
            return StoreUnavailable(f"database error: {exc}")
        return exc

    # ------------------------------------------------------------- writes
    def meta_value(self, key: str, default: Callable[[], str]) -> str:
        """A stored fact, created with default() the first time it is asked for."""

        def op(conn: Connection) -> str:
            found = conn.execute(select(META.c.value).where(META.c.key == key)).scalar()
            if found is not None:
                return str(found)
            value = default()
            conn.execute(insert(META).values(key=key, value=value))
            return value

        return self.write_wait(op)

    def register_function(self, function_id: str, name: str, code: str) -> Future[None]:
        def op(conn: Connection) -> None:
            exists = conn.execute(
                select(FUNCTIONS.c.id).where(FUNCTIONS.c.id == function_id)
            ).scalar()
            if exists is None:
                conn.execute(
                    insert(FUNCTIONS).values(
                        id=function_id, name=name, code=code, created_at=time.time()
                    )
                )

        return self.write(op)

    def accept(
        self,
        group: GroupInfo,
        tasks: Sequence[NewTask],
        submit_id: str,
        result_serializers: Sequence[str],
    ) -> Future[list[str]]:
        """Store new tasks (and their group, if new); a repeated submit_id returns the first ids.

        Whether the group exists is decided here, in the writer, so concurrent
        first submits to one new group create it once. A submit_id seen before
        is accepted only as an exact retry of its batch: same group, same number
        of tasks, same function for each.
        """
        serializers = "\n".join(result_serializers)

        def op(conn: Connection) -> list[str]:
            keys = [f"{submit_id}:{i}" for i in range(len(tasks))]
            first = conn.execute(select(TASKS.c.id).where(TASKS.c.submit_key == keys[0])).scalar()
            if first is not None:  # a retry of a batch committed before
                return self._retried(conn, group, tasks, submit_id, keys)
            now = time.time()
            self._delta[TaskState.ACCEPTED] += len(tasks)
            known = conn.execute(select(GROUPS.c.upstream).where(GROUPS.c.id == group.id)).scalar()
            if known is not None and known != group.upstream:
                raise InvalidRequest(
                    f"task group {group.id} belongs to the {known} upstream; endpoint "
                    f"{group.endpoint_id} is on the {group.upstream} upstream"
                )
            if known is None:
                self._delta[GROUPS_KEY] += 1
                conn.execute(
                    insert(GROUPS).values(
                        id=group.id,
                        upstream=group.upstream,
                        endpoint_id=group.endpoint_id,
                        created_at=now,
                        updated_at=now,
                    )
                )
            else:
                conn.execute(update(GROUPS).where(GROUPS.c.id == group.id).values(updated_at=now))
            ids = [str(uuid.uuid4()) for _ in tasks]
            accepted = int(TaskState.ACCEPTED)
            self._executemany(
                conn,
                ACCEPT_SQL,
                ACCEPT_COLUMNS,
                [
                    (tid, group.id, group.endpoint_id, t.function_id, t.payload, serializers)
                    + (accepted, key, "", "", "", now)
                    for tid, t, key in zip(ids, tasks, keys, strict=True)
                ],
            )
            return ids

        return self.write(op)

    def _retried(
        self,
        conn: Connection,
        group: GroupInfo,
        tasks: Sequence[NewTask],
        submit_id: str,
        keys: list[str],
    ) -> list[str]:
        """The task ids of an earlier batch with this submit_id, if this is an exact retry."""
        stored: dict[str, tuple[str, str, str]] = {}
        for part in _chunks([*keys, f"{submit_id}:{len(keys)}"]):
            query = select(TASKS.c.submit_key, TASKS.c.id, TASKS.c.group_id, TASKS.c.function_id)
            for key, tid, gid, fid in conn.execute(query.where(TASKS.c.submit_key.in_(part))):
                stored[key] = (tid, gid, fid)
        first_group = stored[keys[0]][1]
        same = len(stored) == len(keys) and all(
            k in stored and stored[k][1] == group.id and stored[k][2] == t.function_id
            for k, t in zip(keys, tasks, strict=True)
        )
        if not same:
            raise InvalidRequest(
                f"submit_id {submit_id} was already used for another batch (in task group "
                f"{first_group}); a retry must repeat it exactly (same task group, tasks and "
                "functions), and a new batch needs a new submit_id"
            )
        return [stored[k][0] for k in keys]

    def complete(
        self, completions: Sequence[Completion]
    ) -> Future[tuple[list[TaskEvent], list[Completion]]]:
        """Store terminal states; a task already terminal is left as it is.

        Returns the events that changed something, in seq order (so a result
        that arrives twice is stored and delivered once), and the completions
        that name no stored task, for the caller to keep and log.
        """
        return self.write(lambda conn: self._complete(conn, completions))

    def _complete(
        self, conn: Connection, completions: Sequence[Completion]
    ) -> tuple[list[TaskEvent], list[Completion]]:
        cols = (TASKS.c.id, TASKS.c.group_id, TASKS.c.state, TASKS.c.upstream_task_id)
        by_id: dict[str, Any] = {}
        by_upstream: dict[str, Any] = {}
        for part in _chunks([c.task_id for c in completions if c.task_id]):
            by_id.update(
                (r[0], r) for r in conn.execute(select(*cols).where(TASKS.c.id.in_(part))).all()
            )
        wanted = []
        for c in completions:
            if not c.task_id and c.upstream_task_id:
                cached = self._submitted.pop(c.upstream_task_id, None)
                if cached is not None:
                    by_upstream[c.upstream_task_id] = cached
                else:
                    wanted.append(c.upstream_task_id)
        for part in _chunks(wanted):
            rows = conn.execute(select(*cols).where(TASKS.c.upstream_task_id.in_(part))).all()
            by_upstream.update((str(r[3]), r) for r in rows)
        events: list[TaskEvent] = []
        unknown: list[Completion] = []
        left: Counter[int] = Counter()  # states the completed tasks leave
        now = time.time()
        for c in completions:
            row = by_id.get(c.task_id) if c.task_id else by_upstream.get(c.upstream_task_id or "")
            if row is None:
                unknown.append(c)
                continue
            if row[2] >= TaskState.SUCCESS:  # already terminal: a duplicate
                continue
            left[row[2]] += 1
            by_id[row[0]] = (row[0], row[1], int(c.state), row[3])  # a duplicate is now terminal
            if c.upstream_task_id:
                by_upstream[c.upstream_task_id] = by_id[row[0]]
            self._seq += 1
            events.append(
                TaskEvent(
                    row[0],
                    row[1],
                    c.state,
                    c.data,
                    c.error_code,
                    c.error_message,
                    c.exception,
                    row[3] or "",
                    c.completed_at or now,
                    self._seq,
                )
            )
        for state, n in left.items():
            self._delta[TaskState(state)] -= n
        self._delta.update(e.state for e in events)
        if events:
            self._executemany(
                conn,
                COMPLETE_SQL,
                COMPLETE_COLUMNS,
                [
                    (int(e.state), e.data, e.error_code, e.error_message, e.exception)
                    + (e.completed_at, e.seq, e.task_id)
                    for e in events
                ],
            )
        return events, unknown

    def _executemany(
        self, conn: Connection, stmt: Any, names: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> int:
        """executemany of a statement compiled once; rows are tuples in the order of `names`.

        Returns the number of rows the statement changed.
        """
        compiled = self._compiled.get(id(stmt))
        if compiled is None:
            compiled = self._compiled[id(stmt)] = stmt.compile(dialect=self.engine.dialect)
        order = compiled.positiontup
        params: list[Any]
        if order is None:  # a named paramstyle (e.g. psycopg): dicts
            params = [dict(zip(names, r, strict=True)) for r in rows]
        elif list(order) == list(names):
            params = rows
        else:
            where = [names.index(k) for k in order]
            params = [tuple(r[i] for i in where) for r in rows]
        return int(conn.exec_driver_sql(str(compiled), params).rowcount)

    def mark_submitted(self, upstream_ids: dict[str, str], group_id: str = "") -> Future[None]:
        """Record the upstream's task ids (task id -> upstream task id) of one group's tasks.

        With the group named, the ids are also remembered in memory (bounded)
        so that their results are matched without a query.
        """

        def op(conn: Connection) -> None:
            moved = self._executemany(
                conn, SUBMITTED_SQL, SUBMITTED_COLUMNS, [(u, t) for t, u in upstream_ids.items()]
            )
            self._delta[TaskState.ACCEPTED] -= moved
            self._delta[TaskState.SUBMITTED] += moved
            room = SUBMITTED_CACHE - len(self._submitted)
            if group_id and moved == len(upstream_ids) and room >= moved:
                submitted = int(TaskState.SUBMITTED)
                entries = {up: (tid, group_id, submitted, up) for tid, up in upstream_ids.items()}
                self._on_commit.append(lambda: self._submitted.update(entries))

        return self.write(op)

    def set_upstream_group(self, group_id: str, upstream_group_id: str) -> Future[None]:
        def op(conn: Connection) -> None:
            conn.execute(
                update(GROUPS)
                .where(GROUPS.c.id == group_id)
                .values(upstream_group_id=upstream_group_id)
            )

        return self.write(op)

    def save_registration(
        self, function_id: str, upstream_key: str, upstream_id: str
    ) -> Future[None]:
        def op(conn: Connection) -> None:
            conn.execute(
                delete(REGISTRATIONS)
                .where(REGISTRATIONS.c.function_id == function_id)
                .where(REGISTRATIONS.c.upstream_key == upstream_key)
            )
            conn.execute(
                insert(REGISTRATIONS).values(
                    function_id=function_id,
                    upstream_key=upstream_key,
                    upstream_function_id=upstream_id,
                )
            )

        return self.write(op)

    def quarantine(self, rows: Sequence[tuple[str, str, bytes]]) -> Future[None]:
        """Keep unusable broker messages: (source queue, reason, raw body)."""
        now = time.time()

        def op(conn: Connection) -> None:
            self._delta[QUARANTINE_KEY] += len(rows)
            conn.execute(
                insert(QUARANTINE),
                [{"source": s, "reason": r, "body": b, "received_at": now} for s, r, b in rows],
            )

        return self.write(op)

    def release(self, group_id: str) -> Future[int]:
        """Delete a group and its tasks; the count of tasks deleted."""

        def op(conn: Connection) -> int:
            found = conn.execute(select(GROUPS.c.id).where(GROUPS.c.id == group_id)).scalar()
            if found is None:
                raise NotFound(f"unknown task group {group_id}")
            return self._delete_group(conn, group_id)

        return self.write(op)

    def _delete_group(self, conn: Connection, group_id: str) -> int:
        self._submitted.clear()  # rare: forget every cached id rather than search
        for state, n in conn.execute(
            select(TASKS.c.state, func.count())
            .where(TASKS.c.group_id == group_id)
            .group_by(TASKS.c.state)
        ):
            self._delta[TaskState(state)] -= n
        self._delta[GROUPS_KEY] -= 1
        count = conn.execute(delete(TASKS).where(TASKS.c.group_id == group_id)).rowcount
        conn.execute(delete(GROUPS).where(GROUPS.c.id == group_id))
        return int(count)

    def expire(self, older_than: float) -> Future[list[str]]:
        """Release every finished group untouched since older_than (retention)."""

        def op(conn: Connection) -> list[str]:
            stale = list(
                conn.execute(select(GROUPS.c.id).where(GROUPS.c.updated_at < older_than)).scalars()
            )
            gone = []
            for gid in stale:
                open_tasks = conn.execute(
                    select(func.count())
                    .select_from(TASKS)
                    .where(TASKS.c.group_id == gid)
                    .where(TASKS.c.state.in_(UNFINISHED))
                ).scalar_one()
                if open_tasks == 0:
                    self._delete_group(conn, gid)
                    gone.append(gid)
            return gone

        return self.write(op)

    # --------------------------------------------------------------- reads
    def _read(self, fn: Callable[[Connection], T]) -> T:
        try:
            with self.engine.connect() as conn:
                return fn(conn)
        except SQLAlchemyError as exc:
            raise self._translate(exc) from None

    def group(self, group_id: str) -> GroupInfo | None:
        row = self._read(
            lambda c: c.execute(
                select(
                    GROUPS.c.id,
                    GROUPS.c.upstream,
                    GROUPS.c.endpoint_id,
                    GROUPS.c.upstream_group_id,
                ).where(GROUPS.c.id == group_id)
            ).first()
        )
        return GroupInfo(*row) if row else None

    def groups_with_upstream_ids(self, upstream: str) -> list[GroupInfo]:
        """Groups of one upstream that have unfinished tasks (to resume consuming)."""

        def fn(c: Connection) -> list[GroupInfo]:
            open_groups = select(TASKS.c.group_id).where(TASKS.c.state.in_(UNFINISHED)).distinct()
            rows = c.execute(
                select(
                    GROUPS.c.id,
                    GROUPS.c.upstream,
                    GROUPS.c.endpoint_id,
                    GROUPS.c.upstream_group_id,
                )
                .where(GROUPS.c.upstream == upstream)
                .where(GROUPS.c.id.in_(open_groups))
            ).all()
            return [GroupInfo(*r) for r in rows]

        return self._read(fn)

    def function_code(self, function_id: str) -> tuple[str, str] | None:
        """(name, code) of a stored function."""
        row = self._read(
            lambda c: c.execute(
                select(FUNCTIONS.c.name, FUNCTIONS.c.code).where(FUNCTIONS.c.id == function_id)
            ).first()
        )
        return (row[0], row[1]) if row else None

    def registration(self, function_id: str, upstream_key: str) -> str | None:
        return self._read(
            lambda c: c.execute(
                select(REGISTRATIONS.c.upstream_function_id)
                .where(REGISTRATIONS.c.function_id == function_id)
                .where(REGISTRATIONS.c.upstream_key == upstream_key)
            ).scalar()
        )

    def task_states(self, group_id: str) -> list[tuple[str, int]]:
        """(task id, state) of every task in a group, in the order they were accepted.

        Batches in commit order, tasks in submit order: within a batch the keys
        "<submit_id>:<index>" share a prefix, so ordering by length, then text,
        puts ":2" before ":10".
        """
        return self._read(
            lambda c: list(
                c.execute(
                    select(TASKS.c.id, TASKS.c.state)
                    .where(TASKS.c.group_id == group_id)
                    .order_by(
                        TASKS.c.created_at, func.length(TASKS.c.submit_key), TASKS.c.submit_key
                    )
                ).tuples()
            )
        )

    def events_after(self, group_id: str, after_seq: int, limit: int) -> list[TaskEvent]:
        """Finished tasks of a group with seq > after_seq, oldest first."""
        query = (
            select(*EVENT_COLUMNS)
            .where(TASKS.c.group_id == group_id)
            .where(TASKS.c.seq > after_seq)
            .order_by(TASKS.c.seq)
            .limit(limit)
        )
        return self._read(lambda c: [_event(r) for r in c.execute(query)])

    def tasks(self, task_ids: Sequence[str]) -> list[TaskEvent]:
        """The stored state of given tasks (unfinished ones with empty result fields)."""

        def fn(c: Connection) -> list[TaskEvent]:
            out: list[TaskEvent] = []
            for part in _chunks(task_ids):
                out += [
                    _event(r) for r in c.execute(select(*EVENT_COLUMNS).where(TASKS.c.id.in_(part)))
                ]
            return out

        return self._read(fn)

    def unfinished(self, upstream: str, after_id: str = "", limit: int = 5000) -> list[PendingTask]:
        """Unfinished tasks of one upstream's groups, in pages by task id, without payloads.

        Payloads stay in the store until a task is sent (Store.payloads): a
        restart with gigabytes queued must not load them all.
        """

        def fn(c: Connection) -> list[PendingTask]:
            rows = c.execute(
                select(
                    TASKS.c.id,
                    TASKS.c.group_id,
                    TASKS.c.endpoint_id,
                    TASKS.c.function_id,
                    TASKS.c.result_serializers,
                    TASKS.c.state,
                    TASKS.c.upstream_task_id,
                    func.length(TASKS.c.payload),
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
            return [
                PendingTask(
                    r[0],
                    shared.setdefault(r[1], r[1]),
                    shared.setdefault(r[2], r[2]),
                    shared.setdefault(r[3], r[3]),
                    None,
                    serializers.get(r[4]) or serializers.setdefault(r[4], _serializers(r[4])),
                    TaskState(r[5]),
                    r[6],
                    r[7] or 0,
                )
                for r in rows
            ]

        return self._read(fn)

    def payloads(self, task_ids: Sequence[str]) -> dict[str, str]:
        """Stored payloads of tasks (task id -> payload); a finished task has none."""

        def fn(c: Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for part in _chunks(task_ids):
                query = select(TASKS.c.id, TASKS.c.payload).where(TASKS.c.id.in_(part))
                found.update((r[0], r[1]) for r in c.execute(query) if r[1] is not None)
            return found

        return self._read(fn)

    def state_counts(self) -> dict[TaskState, int]:
        with self._counts_lock:
            return {k: n for k, n in self._counts.items() if isinstance(k, TaskState) and n}

    def group_count(self) -> int:
        with self._counts_lock:
            return self._counts[GROUPS_KEY]

    def quarantine_count(self) -> int:
        with self._counts_lock:
            return self._counts[QUARANTINE_KEY]
