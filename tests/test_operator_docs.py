"""The shell commands of systemd/README.md work as shown: each `sh test=NAME` block is run here.

An operator copies these commands during an incident or a restore; a typo
there costs most when it is found. So every block that can run on this
machine (no systemd, no sudo, no other user) is marked in the page and run
by one test below, against a real daemon and a real store; a marked block
without a test, or a test whose block is gone, fails.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import sqlalchemy as sa

from client import Executor
from tests.daemon import DaemonProcess
from tests.support.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "systemd" / "README.md"
BLOCK = re.compile(r"^```sh test=(\S+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
TESTED = {"config", "sqlite-backup", "sqlite-restore", "pg-backup", "pg-restore"}
SECRET = "globus-secret-Zq81x"


def blocks() -> dict[str, str]:
    return {m.group(1): m.group(2) for m in BLOCK.finditer(README.read_text())}


def run_block(name: str, cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """One block in bash -e, with this checkout's fxgate first on PATH."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FXGATE_", "PG"))}
    full = base | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", blocks()[name]],
        cwd=cwd,
        env=full | dict(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"block {name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_every_runnable_block_is_run_by_a_test() -> None:
    assert set(blocks()) == TESTED


def test_config_block_shows_sources_and_masks_secrets(tmp_path: Path) -> None:
    env = {"FXGATE_STATE_DIR": str(tmp_path), "FXGATE_GLOBUS_TOKEN": SECRET}
    out = run_block("config", tmp_path, env).stdout
    assert SECRET not in out
    assert re.search(r'^log_level +=\s+"debug"\s+\(command line --log-level\)$', out, re.M), out
    assert re.search(r'^globus\.token +=\s+"\*+"\s+\(environment FXGATE_GLOBUS_TOKEN\)$', out, re.M)
    assert re.search(r"^local_workers +=\s+\d+\s+\(default\)$", out, re.M), out
    text = (tmp_path / "settings.json").read_text()
    assert SECRET not in text
    rows = {r["name"]: r for r in json.loads(text)["settings"]}
    assert rows["state_dir"] == {
        "name": "state_dir",
        "value": str(tmp_path),
        "source": "environment FXGATE_STATE_DIR",
        "env": "FXGATE_STATE_DIR",
    }
    assert rows["log_level"]["source"] == "default"  # the second command had no flag


def double(x: int) -> int:
    return 2 * x


def run_task(d: DaemonProcess, x: int) -> None:
    with Executor(endpoint_id="local", address=d.address) as ex:
        assert ex.submit(double, x).result(timeout=60) == 2 * x


def task_count(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM tasks")).scalar_one())
    finally:
        engine.dispose()


def test_sqlite_backup_of_a_running_daemon_restores(daemon: DaemonProcess) -> None:
    state = daemon.state_dir
    env = {"FXGATE_STATE_DIR": str(state)}
    run_task(daemon, 1)
    out = run_block("sqlite-backup", state, env).stdout
    assert out.strip() == "ok"
    run_task(daemon, 2)  # after the backup: the restore must take it away
    assert daemon.stop() == 0, daemon.log()
    assert task_count(f"sqlite:///{state / 'gateway.db'}") == 2

    run_block("sqlite-restore", state, env)
    assert task_count(f"sqlite:///{state / 'gateway.db'}") == 1
    daemon.start()  # the restored store opens and serves
    run_task(daemon, 3)
    with sqlite3.connect(state / "gateway.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_pg_dump_backup_restores(tmp_path: Path, postgres: PostgresCluster) -> None:
    url = postgres.new_database()
    d = DaemonProcess(tmp_path / "state", extra_env={"FXGATE_DB": url})
    d.start()
    try:
        run_task(d, 1)
        env = {"PGURL": url.replace("postgresql+psycopg://", "postgresql://")}
        run_block("pg-backup", tmp_path, env)
        run_task(d, 2)
    finally:
        assert d.stop() == 0, d.log()
    assert task_count(url) == 2
    run_block("pg-restore", tmp_path, env)
    assert task_count(url) == 1
    d.start()
    run_task(d, 3)
    assert d.stop() == 0, d.log()


@pytest.mark.parametrize("path", ["systemd/README.md", "README.md"])
def test_every_setting_is_documented_with_its_environment_name(path: str) -> None:
    from gateway.config import Settings
    from gateway.config_view import rows

    text = (ROOT / path).read_text()
    missing = [r["env"] for r in rows(Settings(), {}) if r["env"] not in text]
    if path == "README.md":  # the top README names the settings, not every variable
        missing = [r["name"] for r in rows(Settings(), {}) if f"`{r['name']}`" not in text]
        missing = [m for m in missing if not m.startswith("globus.")]
    assert not missing, f"{path} does not document {missing}"
