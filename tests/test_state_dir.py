"""The daemon trusts no state dir, socket path or database blindly.

Each test starts real `fxgate serve` processes on real directories, a real
second user's files and real SQLite and PostgreSQL stores, and reads what the
refused daemon printed.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from client import Client, Executor
from gateway.store_lease import PG_LEASE_KEY
from tests.daemon import DaemonProcess
from tests.support.other_user import OtherUser, other_user  # noqa: F401
from tests.support.postgres import PostgresCluster


def refused(d: DaemonProcess) -> str:
    """Start a daemon that must refuse: exit code 2, no traceback, the reason as its last line."""
    proc = d.spawn()
    try:
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            d.kill()
    log = d.log_path.read_text()
    assert code == 2, f"daemon exited with {code}:\n{log}"
    assert "Traceback" not in log, log
    last = log.strip().splitlines()[-1]
    assert last.startswith("fxgate: "), log
    return last


def test_refuses_a_state_dir_owned_by_another_user(
    other_user: OtherUser,  # noqa: F811
    tmp_path: Path,
) -> None:
    d = DaemonProcess(tmp_path / "state")
    d.state_dir.mkdir(mode=0o700)
    os.chown(d.state_dir, other_user.uid, other_user.gid)
    line = refused(d)
    assert str(d.state_dir) in line and other_user.name in line


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_refuses_a_state_dir_others_can_write(tmp_path: Path, mode: int) -> None:
    d = DaemonProcess(tmp_path / "state")
    d.state_dir.mkdir()
    d.state_dir.chmod(mode)
    line = refused(d)
    assert str(d.state_dir) in line and "writable" in line


def test_refuses_a_symlinked_state_dir(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(real)
    d = DaemonProcess(tmp_path / "state")
    line = refused(d)
    assert "symlink" in line
    assert not (real / "gateway.db").exists()


@pytest.mark.parametrize("name", ["gateway.lock", "gateway.sock.lock", "gateway.db"])
def test_refuses_a_symlink_planted_in_the_state_dir(tmp_path: Path, name: str) -> None:
    precious = tmp_path / "precious"
    precious.write_text("root's own file\n")
    d = DaemonProcess(tmp_path / "state")
    d.state_dir.mkdir(mode=0o700)
    (d.state_dir / name).symlink_to(precious)
    line = refused(d)
    assert str(d.state_dir / name) in line and "symlink" in line
    assert precious.read_text() == "root's own file\n"


def test_database_files_are_private(tmp_path: Path) -> None:
    """In a pre-existing 0755 dir the database and its WAL are 0600, also an older 0644 one."""
    d = DaemonProcess(tmp_path / "state")
    d.state_dir.mkdir(mode=0o755)
    d.state_dir.chmod(0o755)
    d.start()
    try:
        with Executor(endpoint_id="local", address=d.address) as ex:
            assert ex.submit(abs, -3).result(timeout=60) == 3
        files = ["gateway.db", "gateway.db-wal", "gateway.db-shm"]
        modes = {n: stat.S_IMODE((d.state_dir / n).stat().st_mode) for n in files}
        assert modes == dict.fromkeys(files, 0o600)
    finally:
        assert d.stop() == 0, d.log()
    (d.state_dir / "gateway.db").chmod(0o644)  # as an older fxgate left it
    d.start()
    try:
        assert stat.S_IMODE((d.state_dir / "gateway.db").stat().st_mode) == 0o600
    finally:
        assert d.stop() == 0, d.log()


def test_a_second_daemon_on_the_same_socket_refuses(tmp_path: Path) -> None:
    first = DaemonProcess(tmp_path / "first")
    first.start()
    try:
        second = DaemonProcess(tmp_path / "second", unix_socket=first.socket)
        line = refused(second)
        assert str(first.socket) in line and f"pid {first.proc.pid}" in line  # type: ignore[union-attr]
        assert stat.S_ISSOCK(first.socket.lstat().st_mode)
        with Client(address=first.address) as c:
            assert c.status()["uptime_s"] >= 0
    finally:
        assert first.stop() == 0, first.log()
    assert not first.socket.exists()  # the owner removes its socket


def test_a_stale_socket_of_a_killed_daemon_is_replaced(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path / "state")
    d.start()
    d.kill()
    assert d.socket.exists()
    d.start()
    with Client(address=d.address) as c:
        assert c.status()["uptime_s"] >= 0
    assert d.stop() == 0, d.log()


def test_refuses_a_socket_path_that_is_not_a_socket(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path / "state")
    d.state_dir.mkdir(mode=0o700)
    d.socket.write_text("not a socket\n")
    line = refused(d)
    assert str(d.socket) in line
    assert d.socket.read_text() == "not a socket\n"


def _two_daemons_on_one_store(first: DaemonProcess, second: DaemonProcess) -> None:
    first.start()
    try:
        line = refused(second)
        assert f"pid {first.proc.pid}" in line, line  # type: ignore[union-attr]
        assert socket.gethostname() in line and str(first.state_dir) in line
        first.kill()  # a dead daemon's lease is free at once
        second.start()
        with Client(address=second.address) as c:
            assert c.status()["uptime_s"] >= 0
        assert second.stop() == 0, second.log()
    finally:
        first.stop()
        second.stop()


def test_two_daemons_on_one_sqlite_file(tmp_path: Path) -> None:
    first = DaemonProcess(tmp_path / "first")
    db = f"sqlite:///{first.state_dir}/gateway.db"
    second = DaemonProcess(tmp_path / "second", extra_env={"FXGATE_DB": db})
    _two_daemons_on_one_store(first, second)


def test_two_daemons_on_one_postgresql_database(postgres: PostgresCluster, tmp_path: Path) -> None:
    db = postgres.new_database()
    first = DaemonProcess(tmp_path / "first", extra_env={"FXGATE_DB": db})
    second = DaemonProcess(tmp_path / "second", extra_env={"FXGATE_DB": db})
    _two_daemons_on_one_store(first, second)


LEASE_SESSIONS = """
    SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database
    WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()
      AND l.classid::bigint = (%(key)s >> 32) AND l.objid::bigint = (%(key)s & 4294967295)
"""


def _lease_holders(conn: Any) -> list[int]:
    return [r[0] for r in conn.execute(LEASE_SESSIONS, {"key": PG_LEASE_KEY}).fetchall()]


def test_a_postgresql_lease_whose_session_ended_is_taken_again(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    """A restart or a dropped connection ends the lease's session; the daemon takes it again,
    so a second daemon is still refused."""
    import psycopg

    db = postgres.new_database()
    first = DaemonProcess(tmp_path / "first", extra_env={"FXGATE_DB": db})
    second = DaemonProcess(tmp_path / "second", extra_env={"FXGATE_DB": db})
    first.start()
    try:
        with psycopg.connect(db.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
            (old,) = _lease_holders(c)
            c.execute("SELECT pg_terminate_backend(%s)", (old,))
            deadline = time.monotonic() + 60
            while (holders := _lease_holders(c)) in ([], [old]):
                assert time.monotonic() < deadline, f"lease not taken again:\n{first.log()}"
                time.sleep(0.1)
            assert len(holders) == 1 and holders[0] != old
        assert f"pid {first.proc.pid}" in refused(second)  # type: ignore[union-attr]
        with Client(address=first.address) as client:
            assert client.status()["uptime_s"] >= 0
    finally:
        assert first.stop() == 0, first.log()


def test_a_daemon_whose_postgresql_lease_another_took_stops(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    """If another holder takes the lease while the daemon's session is gone, the daemon
    stops (exit 2, one line naming why) instead of running tasks beside it."""
    import psycopg

    db = postgres.new_database()
    d = DaemonProcess(tmp_path / "state", extra_env={"FXGATE_DB": db})
    d.start()
    try:
        with psycopg.connect(db.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
            (holder,) = _lease_holders(c)
            c.execute("SELECT pg_terminate_backend(%s)", (holder,))
            c.execute("SELECT pg_advisory_lock(%s)", (PG_LEASE_KEY,))  # queued before the daemon
            assert d.proc is not None
            code = d.proc.wait(timeout=60)
    finally:
        d.stop()
    log = d.log()
    assert code == 2, log
    assert "lost the database lease" in log
    assert "Traceback" not in log
    assert log.strip().splitlines()[-1].startswith("fxgate: another fxgate daemon"), log
