"""The group-commit engine: one writer thread commits every queued write in one transaction.

Durability is what makes "accepted" and "acknowledged" mean something, so
every write waits for a commit with ``synchronous=FULL`` on SQLite. To keep
that cheap, the writer thread drains every write waiting in its queue into a
single transaction: a thousand accepted tasks or results cost one fsync, not
a thousand.

A write is a function of a ``Transaction``: the connection, plus what the
commit will make true in memory (counter deltas, after-commit actions, the
completion seq). Nothing of it takes effect unless the transaction commits;
a batch retried after a locked database starts from a fresh Transaction.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from gateway.loglimit import throttled
from gateway.stats import COMMIT_SECONDS, COMMIT_WRITES, Histogram
from gateway.store.counters import Counters, CountKey
from gateway.store.sql import CompiledStatements, translate

log = logging.getLogger(__name__)

T = TypeVar("T")
# Attempts of a commit that met a locked or full database, before it fails.
RETRIES_WHEN_BUSY = 3


class Transaction:
    """One attempt at committing a batch: its connection and what its commit will make true.

    Used only on the store-writer thread, by the ops of one batch in turn.
    """

    __slots__ = ("conn", "deltas", "actions", "seq", "_statements")

    def __init__(self, conn: Connection, seq: int, statements: CompiledStatements) -> None:
        self.conn = conn
        self.deltas: Counter[CountKey] = Counter()  # applied to the counters on commit
        self.actions: list[Callable[[], None]] = []  # run after the commit, in order
        self.seq = seq  # the last completion seq handed out, committed or in this transaction
        self._statements = statements

    def count(self, key: CountKey, n: int = 1) -> None:
        """Change a status count by n once this transaction commits."""
        self.deltas[key] += n

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` on the writer thread once this transaction committed (never if not)."""
        self.actions.append(action)

    def next_seq(self) -> int:
        """The next number of the store-wide completion order (gapless across commits)."""
        self.seq += 1
        return self.seq

    def executemany(self, stmt: Any, names: Sequence[str], rows: list[tuple[Any, ...]]) -> int:
        """A hot statement, compiled once, run for plain tuples; the count of rows changed."""
        return self._statements.executemany(self.conn, stmt, names, rows)


WriteOp = Callable[[Transaction], Any]
Item = tuple[WriteOp, "Future[Any]"]


class Writer:
    """The "store-writer" thread and its queue; every write of the daemon goes through it."""

    def __init__(self, engine: Engine, counters: Counters, *, max_batch: int) -> None:
        self._engine = engine
        self._counters = counters
        self._max_batch = max_batch
        self._statements = CompiledStatements(engine.dialect)  # store-writer thread only
        # Any thread puts writes (None: stop); only the store-writer thread takes them.
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        # The last committed completion seq: set by start(), then store-writer thread only.
        self._seq = 0
        # Observed by the store-writer thread once per commit; read at scrape (own locks).
        self.commit_seconds = Histogram(COMMIT_SECONDS)
        self.commit_writes = Histogram(COMMIT_WRITES)
        # When the batch being committed was taken (monotonic), None while idle. Written by
        # the store-writer thread once per batch, read by the health loop (a float: atomic).
        self._busy_since: float | None = None
        # The writer's own connection, kept across commits: a pool checkout and the
        # pool's rollback on return cost more than a one-row commit's SQL. Dropped after
        # a database error, so the next attempt starts on a fresh one. Store-writer only.
        self._conn: Connection | None = None
        self._thread = threading.Thread(target=self._loop, name="store-writer", daemon=True)

    def start(self, last_seq: int) -> None:
        """Start writing; completion seqs continue after last_seq (the stored maximum)."""
        self._seq = last_seq
        self._thread.start()

    def stop(self) -> None:
        """Commit what is queued, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def submit(self, op: Callable[[Transaction], T]) -> Future[T]:
        """Queue a write; its future resolves after the transaction committed.

        Any thread may call this; the future's callbacks run on the store-writer thread.
        """
        fut: Future[T] = Future()
        self._queue.put((op, fut))
        return fut

    def _loop(self) -> None:
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
            self._busy_since = time.monotonic()
            self._commit_batch(batch)
            self._busy_since = None
            if stop:
                self._drop_connection()
                return

    def stalled_s(self) -> float:
        """How long the batch being committed has taken so far; 0 while idle.

        A writer that waits on a locked database or a wedged disk shows here,
        so the daemon's watchdog can stop vouching for it. Any thread may call this.
        """
        since = self._busy_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    def _commit_batch(self, batch: list[Item]) -> None:
        for attempt in range(RETRIES_WHEN_BUSY + 1):
            began = time.perf_counter()
            try:
                tx, results = self._attempt(batch)
            except OperationalError as exc:  # locked, busy, full: transient, maybe
                self._drop_connection()
                if attempt == RETRIES_WHEN_BUSY:
                    return self._fail_batch(batch, exc)
                throttled(log).warning("database unavailable (%s); retrying the commit", exc.orig)
                time.sleep(0.1 * 2**attempt)
                continue
            except Exception as exc:  # noqa: BLE001 - isolate the op that failed
                return self._fail_batch(batch, exc)
            self.commit_seconds.observe(time.perf_counter() - began)
            self.commit_writes.observe(len(batch))
            self._committed(tx)
            for (_, fut), result in zip(batch, results, strict=True):
                fut.set_result(result)
            return

    def _attempt(self, batch: list[Item]) -> tuple[Transaction, list[Any]]:
        """Run every op of the batch in one fresh transaction and commit it."""
        if self._conn is None:
            self._conn = self._engine.connect()
        with self._conn.begin():
            tx = Transaction(self._conn, self._seq, self._statements)
            results = [op(tx) for op, _ in batch]
        return tx, results

    def _drop_connection(self) -> None:
        """Give the connection back (after an error, or at stop); the next commit opens one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection is dropped either way
                log.debug("closing the writer's connection failed", exc_info=True)

    def _committed(self, tx: Transaction) -> None:
        """Make true in memory what a committed transaction made true on disk."""
        self._seq = tx.seq
        self._counters.apply(tx.deltas)
        for action in tx.actions:
            try:
                action()
            except Exception:  # a failed action must not undo or repeat a commit
                log.exception("an action after a commit failed")

    def _fail_batch(self, batch: list[Item], exc: Exception) -> None:
        """Fail every write of a batch the database refused; isolate a write that raised."""
        if len(batch) == 1 or isinstance(exc, OperationalError):
            for _, fut in batch:
                fut.set_exception(translate(exc))
            return
        for item in batch:
            self._commit_batch([item])
