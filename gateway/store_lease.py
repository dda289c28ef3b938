"""One daemon per database: a lease taken before the store opens, held for the daemon's life.

At start a daemon resumes every unfinished task in its store. Two daemons on
one database (two state dirs given one SQLite file or one PostgreSQL URL)
would each resume, and run or submit again, the other's tasks. So the second
one refuses to start and names the first (host, pid, state dir).

- SQLite: an flock on `<database>.lock` beside the file (the kernel frees it
  when the holder dies). The database file is created mode 0600 before
  SQLite opens it; SQLite gives its -wal and -shm files the database file's
  mode, so none of them is readable by others, without a umask that worker
  processes would inherit.
- PostgreSQL: a session-level advisory lock on a dedicated connection (the
  server frees it when that session ends, also when the daemon is killed),
  and a one-row table naming the holder.
  This module reaches SQL only for the lease; the store's data stays in gateway/store/.

The lease is taken and released on the main thread (Daemon.start / stop); in
between, only the daemon's lease-keeper thread touches it (`keep`). A
PostgreSQL restart or a dropped connection ends the session and with it the
advisory lock: the keeper takes it again on a new connection, and if another
daemon took it first, this daemon stops rather than run tasks beside it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, NullPool, create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import AlreadyRunning, ConfigError, StoreUnavailable
from gateway.state_dir import hold, open_private

log = logging.getLogger(__name__)

# pg_try_advisory_lock's key for "this database's fxgate daemon"; advisory locks
# are scoped to one database, so one constant serves every database.
PG_LEASE_KEY = 0x6678676174650001
ADVICE = "stop it first, or give this daemon a database of its own (--db)"


class StoreLease:
    """What keeps other daemons off the database: a lock file, a connection, or nothing."""

    def __init__(
        self,
        lock: IO[str] | None = None,
        conn: Connection | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self._lock = lock
        self._conn = conn
        self._state_dir = state_dir

    def keep(self) -> None:
        """Check the lease still holds; take it again if its session ended.

        Raises AlreadyRunning when another daemon holds it now. A database that
        cannot be reached is not a loss: nobody can take the lease then, and the
        next check tries again.
        """
        if self._conn is None or self._state_dir is None:
            return  # a lock file (or nothing) cannot be lost while the process lives
        try:
            self._conn.execute(text("SELECT 1")).scalar()
            return
        except SQLAlchemyError:
            pass
        engine = self._conn.engine
        try:
            self._conn.close()
        except SQLAlchemyError:
            pass
        try:
            self._conn = _lock_session(engine, self._state_dir)
        except StoreUnavailable:
            return
        log.warning("database lease taken again after its session ended")

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
        if self._conn is not None:
            engine = self._conn.engine
            self._conn.close()
            engine.dispose()


def take_lease(url: str, state_dir: Path) -> StoreLease:
    """Hold the database for this daemon, or refuse naming the daemon that holds it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_lease(parsed.database, state_dir)
    if parsed.get_backend_name() == "postgresql":
        return _postgresql_lease(url, state_dir)
    log.warning("no lease on %s databases: run one daemon per database", parsed.get_backend_name())
    return StoreLease()


def _sqlite_lease(database: str | None, state_dir: Path) -> StoreLease:
    if not database or database == ":memory:" or database.startswith("file:"):
        return StoreLease()  # private to this process, or a URI we do not interpret
    path = Path(database).absolute()
    for suffix in ("", "-wal", "-shm"):  # our own, mode 0600 (older versions left 0644)
        try:
            os.close(open_private(Path(f"{path}{suffix}"), create=suffix == ""))
        except FileNotFoundError:
            pass
    lock = hold(Path(f"{path}.lock"), f"database {path}", state_dir, ADVICE)
    return StoreLease(lock=lock)


def _postgresql_lease(url: str, state_dir: Path) -> StoreLease:
    try:
        engine = create_engine(url, poolclass=NullPool)
    except ImportError as exc:
        raise ConfigError(
            f"no driver for {make_url(url).drivername} ({exc}): install it "
            "(fxgate[postgresql] brings psycopg)"
        ) from None
    try:
        conn = _lock_session(engine, state_dir)
    except (AlreadyRunning, StoreUnavailable):
        engine.dispose()
        raise
    return StoreLease(conn=conn, state_dir=state_dir)


def _lock_session(engine: Engine, state_dir: Path) -> Connection:
    """A new session holding the advisory lock and naming this daemon as its holder."""
    try:
        conn = engine.connect()
    except SQLAlchemyError as exc:
        safe = engine.url.render_as_string(hide_password=True)
        raise StoreUnavailable(f"cannot open database {safe}: {exc}") from None
    try:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PG_LEASE_KEY}).scalar()
        if not got:
            raise AlreadyRunning(
                f"another fxgate daemon ({_pg_holder(conn)}) is using this database; {ADVICE}"
            )
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS fxgate_daemon_lease (id integer PRIMARY KEY, "
                "host text NOT NULL, pid integer NOT NULL, state_dir text NOT NULL, "
                "since double precision NOT NULL)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO fxgate_daemon_lease VALUES (1, :host, :pid, :dir, :since) "
                "ON CONFLICT (id) DO UPDATE SET host = :host, pid = :pid, state_dir = :dir, "
                "since = :since"
            ),
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "dir": str(state_dir.absolute()),
                "since": time.time(),
            },
        )
        conn.commit()  # the session-level lock outlives the transaction
    except (SQLAlchemyError, AlreadyRunning) as exc:
        try:
            conn.close()
        except SQLAlchemyError:
            pass
        if isinstance(exc, AlreadyRunning):
            raise
        safe = engine.url.render_as_string(hide_password=True)
        raise StoreUnavailable(f"cannot open database {safe}: {exc}") from None
    return conn


def _pg_holder(conn: Connection) -> str:
    try:
        row = conn.execute(
            text("SELECT host, pid, state_dir FROM fxgate_daemon_lease WHERE id = 1")
        ).one_or_none()
    except SQLAlchemyError:
        row = None
    if row is None:
        return "unknown: it is still starting"
    return f"pid {row.pid} on {row.host}, state dir {row.state_dir}"
