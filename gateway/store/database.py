"""Store: the daemon's durable state, the one door the rest of the daemon uses.

Every write goes through one writer thread that group-commits (writer.py)
and waits for a commit with ``synchronous=FULL`` on SQLite, so "accepted"
and "acknowledged" mean something; reads run on their own pooled
connections. The SQL itself lives in writes.py and reads.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from fxgate_contract.states import TaskState
from gateway.errors import StoreUnavailable
from gateway.stats import Histogram
from gateway.store import reads, writes
from gateway.store.counters import GROUPS_KEY, QUARANTINE_KEY, Counters, TaskKey
from gateway.store.group_upstreams import GroupUpstreams
from gateway.store.options import SharedOptions, options_key
from gateway.store.records import (
    NO_OPTIONS,
    AcceptedIds,
    Completion,
    FunctionRecord,
    GroupInfo,
    GroupSummary,
    NewTask,
    PendingTask,
    TaskEvent,
    TaskOptions,
    TaskSummary,
)
from gateway.store.sql import translate
from gateway.store.tables import METADATA, add_missing_columns
from gateway.store.writer import Transaction, Writer

T = TypeVar("T")

# SQLite page cache per pooled connection (its default is 2 MB).
PAGE_CACHE_KB = 512


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
        self._counters = Counters()  # own lock: the writer updates, any thread reads
        self._writer = Writer(self.engine, self._counters, max_batch=max_batch)
        self._options = SharedOptions()  # any thread (see SharedOptions)
        # Option-set keys committed to task_options (rows never deleted), so a
        # Submit repeating a set skips the lookup. Owned by the store-writer thread.
        self._stored_option_keys: set[str] = set()
        # Each group's upstream, for the counts by upstream. Owned by the store-writer thread.
        self._groups = GroupUpstreams()

    # ----------------------------------------------------------------- life
    def open(self) -> None:
        """Create the schema if needed and start the writer."""
        try:
            METADATA.create_all(self.engine)
            add_missing_columns(self.engine)
            with self.engine.connect() as conn:
                last_seq, counts = reads.opening_state(conn)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"cannot open database {self.safe_url}: {exc}") from None
        self._counters.reset(counts)
        self._writer.start(last_seq)

    def close(self) -> None:
        """Finish queued writes, then stop the writer."""
        self._writer.stop()
        self.engine.dispose()

    def writer_stalled_s(self) -> float:
        """Seconds the store-writer has spent on its current batch (0 when idle); any thread."""
        return self._writer.stalled_s()

    @property
    def safe_url(self) -> str:
        """The database URL without its password, for logs and messages."""
        return self.engine.url.render_as_string(hide_password=True)

    # --------------------------------------------------------------- writes
    def write(self, op: Callable[[Transaction], T]) -> Future[T]:
        """Queue a write; its future resolves after the transaction committed."""
        return self._writer.submit(op)

    def write_wait(self, op: Callable[[Transaction], T], timeout: float | None = 60.0) -> T:
        """A write, waited for."""
        return self.write(op).result(timeout)

    def meta_value(self, key: str, default: Callable[[], str]) -> str:
        """A stored fact, created with default() the first time it is asked for."""
        return self.write_wait(lambda tx: writes.meta_value(tx, key, default))

    def register_function(self, function_id: str, function: FunctionRecord) -> Future[None]:
        """Store a function (once; a function id names one record)."""
        return self.write(lambda tx: writes.register_function(tx, function_id, function))

    def accept(
        self,
        group: GroupInfo,
        tasks: Sequence[NewTask],
        submit_id: str,
        result_serializers: Sequence[str],
        options: TaskOptions = NO_OPTIONS,
    ) -> Future[AcceptedIds]:
        """Store new tasks (and their group, if new); a repeated submit_id returns the first ids
        (marked `retried`).

        Whether the group exists is decided here, in the writer, so concurrent
        first submits to one new group create it once. A submit_id seen before
        is accepted only as an exact retry of its batch: same group, same number
        of tasks, same function for each, same options.
        """
        serializers = "\n".join(result_serializers)
        stored = (options_key(options), options)
        known, groups = self._stored_option_keys, self._groups
        return self.write(
            lambda tx: writes.accept(
                tx, group, tasks, submit_id, serializers, stored, known, groups
            )
        )

    def share_options(self, options: TaskOptions) -> TaskOptions:
        """The one object this store hands out for options equal to these (Submit's, read back)."""
        return self._options.share(options_key(options), options)

    def known_options(self, options: TaskOptions) -> TaskOptions | None:
        """The object already handed out for options equal to these, if any."""
        return self._options.get(options_key(options))

    def complete(
        self, completions: Sequence[Completion]
    ) -> Future[tuple[list[TaskEvent], list[Completion]]]:
        """Store terminal states; a task already terminal is left as it is.

        Returns the events that changed something, in seq order (so a result
        that arrives twice is stored and delivered once), and the completions
        that name no stored task, for the caller to keep and log.
        """
        return self.write(lambda tx: writes.complete(tx, completions, self._groups))

    def mark_submitted(self, upstream_ids: dict[str, str], group_id: str = "") -> Future[None]:
        """Record the upstream's task ids (task id -> upstream task id) of tasks it took;
        all of one upstream, of group_id when given (else their group is read once)."""
        groups = self._groups
        return self.write(lambda tx: writes.mark_submitted(tx, upstream_ids, groups, group_id))

    def mark_running(self, started: dict[str, str]) -> Future[int]:
        """Record tasks the upstream started (ACCEPTED -> RUNNING; finished ones stay)."""
        return self.write(lambda tx: writes.mark_running(tx, started, self._groups))

    def reset_running(self, upstream: str) -> Future[int]:
        """At start: one upstream's RUNNING tasks are queued again, not running (ACCEPTED)."""
        return self.write(lambda tx: writes.reset_running(tx, upstream))

    def set_upstream_group(self, group_id: str, upstream_group_id: str) -> Future[None]:
        """Record the id the upstream gave a group at its first submit."""
        return self.write(lambda tx: writes.set_upstream_group(tx, group_id, upstream_group_id))

    def save_registration(
        self, function_id: str, upstream_key: str, upstream_id: str
    ) -> Future[None]:
        """Record a function's id at one upstream, so it is registered there only once."""
        return self.write(
            lambda tx: writes.save_registration(tx, function_id, upstream_key, upstream_id)
        )

    def quarantine(self, rows: Sequence[tuple[str, str, bytes]]) -> Future[None]:
        """Keep unusable broker messages: (source queue, reason, raw body)."""
        now = time.time()
        return self.write(lambda tx: writes.quarantine(tx, rows, now))

    def release(self, group_id: str, require_finished: bool = False) -> Future[int]:
        """Delete a group and its tasks; the count of tasks deleted. require_finished:
        refused (Conflict) while a task of it is unfinished, decided in the writer."""
        return self.write(lambda tx: writes.release(tx, group_id, require_finished, self._groups))

    def expire(self, older_than: float) -> Future[dict[str, int]]:
        """Release every finished group untouched since older_than (retention);
        {group id: tasks released}."""
        return self.write(lambda tx: writes.expire(tx, older_than, self._groups))

    # --------------------------------------------------------------- reads
    def _read(self, fn: Callable[[Connection], T]) -> T:
        try:
            with self.engine.connect() as conn:
                return fn(conn)
        except SQLAlchemyError as exc:
            raise translate(exc) from None

    def group(self, group_id: str) -> GroupInfo | None:
        """One task group, None if unknown."""
        return self._read(lambda c: reads.group(c, group_id))

    def group_by_upstream_id(self, upstream_group_id: str) -> GroupInfo | None:
        """The group the upstream knows by this id, None if none."""
        return self._read(lambda c: reads.group_by_upstream_id(c, upstream_group_id))

    def groups_with_upstream_ids(self, upstream: str) -> list[GroupInfo]:
        """Groups of one upstream that have unfinished tasks (to resume consuming)."""
        return self._read(lambda c: reads.groups_with_upstream_ids(c, upstream))

    def function_code(self, function_id: str) -> FunctionRecord | None:
        """A stored function."""
        return self._read(lambda c: reads.function_code(c, function_id))

    def registration(self, function_id: str, upstream_key: str) -> str | None:
        """A function's id at one upstream, if it was registered there."""
        return self._read(lambda c: reads.registration(c, function_id, upstream_key))

    def task_states(self, group_id: str) -> list[tuple[str, int]]:
        """(task id, state) of every task in a group, in the order they were accepted."""
        return self._read(lambda c: reads.task_states(c, group_id))

    def events_after(self, group_id: str, after_seq: int, limit: int) -> list[TaskEvent]:
        """Finished tasks of a group with seq > after_seq, oldest first."""
        return self._read(lambda c: reads.events_after(c, group_id, after_seq, limit))

    def tasks(self, task_ids: Sequence[str]) -> list[TaskEvent]:
        """The stored state of given tasks (unfinished ones with empty result fields)."""
        return self._read(lambda c: reads.tasks(c, task_ids))

    def tasks_by_upstream_id(self, upstream_task_ids: Sequence[str]) -> list[TaskEvent]:
        """The stored state of tasks named by the ids their upstream gave them."""
        return self._read(lambda c: reads.tasks_by_upstream_id(c, upstream_task_ids))

    def submitted_events(self, group_id: str, after_id: str, limit: int) -> list[TaskEvent]:
        """SUBMITTED tasks of a group as events (seq 0), in pages by task id."""
        return self._read(lambda c: reads.submitted_events(c, group_id, after_id, limit))

    def running_events(self, group_id: str, after_id: str, limit: int) -> list[TaskEvent]:
        """RUNNING tasks of a group as events (seq 0), in pages by task id."""
        return self._read(lambda c: reads.running_events(c, group_id, after_id, limit))

    def unfinished_ids(
        self, group_id: str, after_id: str = "", limit: int = 5000
    ) -> tuple[int, list[str]]:
        """(how many tasks of a group are unfinished, a page of their ids after after_id)."""
        return self._read(lambda c: reads.unfinished_ids(c, group_id, after_id, limit))

    def upstream_task_ids(self, group_id: str) -> dict[str, str]:
        """task id -> upstream task id, for the tasks of a group the upstream has named."""
        return self._read(lambda c: reads.upstream_task_ids(c, group_id))

    def unfinished(self, upstream: str, after_id: str = "", limit: int = 5000) -> list[PendingTask]:
        """Unfinished tasks of one upstream's groups, in pages by task id, without payloads.

        Payloads stay in the store until a task is sent (Store.payloads): a
        restart with gigabytes queued must not load them all.
        """
        return self._read(lambda c: reads.unfinished(c, upstream, after_id, limit, self._options))

    def group_page(
        self, limit: int, before: tuple[float, str] | None, only: str = ""
    ) -> list[GroupSummary]:
        """Groups newest first after the (created_at, id) key `before` (or `only` that one),
        with their tasks counted by state."""
        return self._read(lambda c: reads.group_page(c, limit, before, only))

    def task_page(
        self, group_id: str, state: TaskState | None, after_id: str, limit: int
    ) -> list[TaskSummary]:
        """A group's tasks by id after after_id (of one state, or all), without results."""
        return self._read(lambda c: reads.task_page(c, group_id, state, after_id, limit))

    def expirable(self, older_than: float) -> dict[str, int]:
        """What expire(older_than) would release now: {group id: task count}."""
        return self._read(lambda c: reads.expirable(c, older_than))

    def payloads(self, task_ids: Sequence[str]) -> dict[str, str]:
        """Stored payloads of tasks (task id -> payload); a finished task has none."""
        return self._read(lambda c: reads.payloads(c, task_ids))

    # -------------------------------------------------------------- counts
    def state_counts(self) -> dict[TaskState, int]:
        """Tasks by state, as of the last commit."""
        return self._counters.states()

    def upstream_state_counts(self) -> dict[TaskKey, int]:
        """Tasks by (upstream, state), as of the last commit."""
        return self._counters.tasks()

    def group_count(self) -> int:
        """Task groups, as of the last commit."""
        return self._counters.get(GROUPS_KEY)

    def quarantine_count(self) -> int:
        """Quarantined broker messages, as of the last commit."""
        return self._counters.get(QUARANTINE_KEY)

    def commit_histograms(self) -> tuple[Histogram, Histogram]:
        """(seconds per group commit, writes per group commit), for the metrics endpoint."""
        return self._writer.commit_seconds, self._writer.commit_writes
