"""Logs an operator can use: ids to grep by, JSON lines for shippers, and never a secret.

The end-to-end test starts a real daemon configured with every kind of
secret it can hold (a Globus token and client secret, the daemon's own auth
token in a file, a database URL with a password), at DEBUG, in JSON, drives
real work through both upstreams (a fake Globus Compute service on a real
RabbitMQ, and a local worker that dies under its task), and then reads all
of its output: every line must be a JSON object, no secret may appear, and
the line about the lost task must carry its group and task ids as fields.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from client import Executor
from gateway.config import GlobusSettings, Settings
from gateway.logs import MASK, formatter
from tests.daemon import ROOT, DaemonProcess
from tests.support.fake_globus import FakeGlobus
from tests.support.fixtures import rabbit  # noqa: F401
from tests.support.postgres import PostgresCluster
from tests.support.rabbitmq import RabbitNode, free_ports
from tests.test_tcp import self_signed

GLOBUS_TOKEN = "globus-token-Hq2v9Ww1"
CLIENT_SECRET = "client-secret-Pz7Lm3Kd"
DAEMON_TOKEN = "daemon-token-Xy4Tb8Rr6Nq1"
DB_PASSWORD = "db-password-Vc5Jk2"
SECRETS = (GLOBUS_TOKEN, CLIENT_SECRET, DAEMON_TOKEN, DB_PASSWORD)


def double(x: int) -> int:
    return 2 * x


def die() -> None:
    import os

    os._exit(3)


@pytest.fixture
def fake(rabbit: RabbitNode) -> Iterator[FakeGlobus]:  # noqa: F811
    with FakeGlobus(rabbit.url, token=GLOBUS_TOKEN) as f:
        yield f


@pytest.fixture
def secret_daemon(
    tmp_path: Path,
    fake: FakeGlobus,
    postgres: PostgresCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[DaemonProcess]:
    """A daemon over TCP holding every kind of secret, logging JSON at DEBUG."""
    cert, key = self_signed(tmp_path)
    token_file = tmp_path / "daemon-token"
    token_file.write_text(DAEMON_TOKEN + "\n")
    # The test cluster trusts every connection, so the password is carried but not needed.
    user = f"//{postgres.user}@"
    db = postgres.new_database().replace(user, f"//{postgres.user}:{DB_PASSWORD}@", 1)
    d = DaemonProcess(
        tmp_path / "state",
        tcp_address=f"127.0.0.1:{free_ports(1)[0]}",
        extra_env=fake.daemon_env()
        | {
            "FXGATE_TLS_CERT_FILE": str(cert),
            "FXGATE_TLS_KEY_FILE": str(key),
            "FXGATE_AUTH_TOKEN_FILE": str(token_file),
            "FXGATE_GLOBUS_CLIENT_ID": "0b7e9f0e-6a1c-4d8e-9a55-2f0c1d7e6b11",
            "FXGATE_GLOBUS_CLIENT_SECRET": CLIENT_SECRET,
            "FXGATE_DB": db,
            "FXGATE_LOG_LEVEL": "DEBUG",
            "FXGATE_LOG_FORMAT": "json",
        },
    )
    d.start()
    monkeypatch.setenv("FXGATE_TLS_CA_FILE", str(cert))
    monkeypatch.setenv("FXGATE_AUTH_TOKEN", DAEMON_TOKEN)
    yield d
    d.stop()


def test_json_logs_carry_ids_and_no_secret(secret_daemon: DaemonProcess, fake: FakeGlobus) -> None:
    d = secret_daemon
    with Executor(endpoint_id=fake.endpoint_id, address=d.address) as ex:
        assert ex.submit(double, 21).result(timeout=60) == 42
    with Executor(endpoint_id="local", address=d.address) as ex:
        lost = ex.submit(die)
        with pytest.raises(Exception, match="WorkerLost|exited with code 3"):
            lost.result(timeout=60)
        group = ex.task_group_id
    assert d.stop() == 0, d.log()

    raw = d.log()
    for secret in SECRETS:
        assert secret not in raw, f"a secret reached the daemon's output: {secret}"
    lines = [json.loads(line) for line in raw.splitlines()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(doc) for doc in lines)
    serving = [doc for doc in lines if doc["message"].startswith("fxgate serving on")]
    assert serving and ":***@" in serving[0]["message"]  # the store URL, password masked
    assert any(doc["level"] == "DEBUG" for doc in lines)
    died = [doc for doc in lines if doc.get("task") == lost.task_id]
    assert died, raw
    assert died[0]["group"] == str(group)
    assert died[0]["message"] == "worker exited with code 3 while running a task"
    assert died[0]["worker_pid"].isdigit()


def test_a_refused_start_logs_one_json_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://fx:{DB_PASSWORD}@127.0.0.1:{free_ports(1)[0]}/nothing"
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--log-format", "json", "--db", url],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "FXGATE_STATE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert DB_PASSWORD not in proc.stdout + proc.stderr
    docs = [json.loads(line) for line in proc.stderr.splitlines()]
    assert docs[-1]["level"] == "ERROR" and "database" in docs[-1]["message"], docs


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("gateway.x", logging.WARNING, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_text_format_appends_ids_and_masks_secrets() -> None:
    settings = Settings(auth_token=DAEMON_TOKEN, globus=GlobusSettings(client_secret=CLIENT_SECRET))
    line = formatter(settings).format(
        record(f"refused {DAEMON_TOKEN} and {CLIENT_SECRET}", group="g1", task="t1")
    )
    assert line.endswith(f"refused {MASK} and {MASK} group=g1 task=t1"), line


def test_json_format_masks_secrets_in_fields_too() -> None:
    settings = Settings(log_format="json", db=f"postgresql://u:{DB_PASSWORD}@h/db")
    doc = json.loads(formatter(settings).format(record("x", task=f"t-{DB_PASSWORD}")))
    assert doc["task"] == f"t-{MASK}" and doc["message"] == "x"
