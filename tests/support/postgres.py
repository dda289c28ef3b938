"""A private PostgreSQL cluster for a test session: Debian's server, its own data dir and port.

The daemon's store is meant to run on PostgreSQL past one machine, so the
store and a daemon are tested on a real server, not only on SQLite. initdb
refuses to run as root: as root, the cluster runs as Debian's `postgres`
user. `pg_ctl -w` returns once the server accepts connections, so nothing
here sleeps. Each test gets a database of its own.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.support.rabbitmq import free_ports
from tests.support.run_as import RunAs


class PostgresUnavailable(RuntimeError):
    pass


def find_bin(name: str) -> Path:
    """A server program: on PATH, or in Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return Path(found)
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if not versions:
        raise PostgresUnavailable(
            f"{name} not found: install Debian's postgresql package (scripts/test does)"
        )
    return versions[-1]


class PostgresCluster:
    """initdb + pg_ctl in a temporary directory, listening on 127.0.0.1 only."""

    user = "fxgate"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fxtest-pg-"))
        self.data = self.root / "data"
        (self.port,) = free_ports(1)
        self._run_as = RunAs.service_user("postgres")
        if self._run_as.is_root:
            raise PostgresUnavailable("running as root without a postgres user")

    def _run(self, *argv: str | Path) -> None:
        out = subprocess.run(
            [str(a) for a in argv],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            **self._run_as.process_kwargs,  # type: ignore[arg-type]
        )
        if out.returncode != 0:
            raise PostgresUnavailable(f"{argv[0]} failed:\n{out.stdout}\n{out.stderr}")

    def start(self) -> None:
        self._run_as.chown_tree(self.root)
        self._run(find_bin("initdb"), "-D", self.data, "-A", "trust", "-U", self.user)
        self.start_server()

    def start_server(self) -> None:
        """Start the server on the existing data dir; returns once it accepts connections."""
        options = f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1"
        log = self.root / "server.log"
        self._run(find_bin("pg_ctl"), "-D", self.data, "-o", options, "-l", log, "-w", "start")

    def stop_server(self) -> None:
        """Fast shutdown: open sessions are ended, committed data is kept (a restart, part 1)."""
        self._run(find_bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(find_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"t{uuid.uuid4().hex}"
        dsn = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)
