"""Shared fixtures: a real daemon process per test, real RabbitMQ and fake web service."""

from __future__ import annotations

import os

# The test process forks daemons and scripts while its own gRPC channels are
# live; gRPC's fork handlers are for processes that keep using gRPC after a
# fork, which these children (exec'd at once) never do.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from collections.abc import Iterator
from pathlib import Path

import pytest

from client import Client, Executor
from tests.daemon import DaemonProcess
from tests.support.fixtures import postgres  # noqa: F401


@pytest.fixture
def daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DaemonProcess]:
    """A running `fxgate serve` with its own state dir and two local workers.

    Its store is SQLite in the state dir; a test parametrized indirectly with
    "postgresql" gets a fresh database on the session's PostgreSQL instead.
    """
    extra = {}
    on_postgres = getattr(request, "param", "sqlite") == "postgresql"
    if on_postgres:
        extra["FXGATE_DB"] = request.getfixturevalue("postgres").new_database()
    d = DaemonProcess(tmp_path / "state", extra_env=extra)
    d.start()
    if on_postgres:
        assert "(store postgresql+psycopg://" in d.log(), d.log()
    yield d
    code = d.stop()
    assert code in (0, -9), f"daemon exited with {code}:\n{d.log()}"


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[Client]:
    with Client(address=daemon.address) as c:
        yield c


@pytest.fixture
def executor(daemon: DaemonProcess) -> Iterator[Executor]:
    ex = Executor(endpoint_id="local", address=daemon.address)
    yield ex
    ex.shutdown(wait=False, cancel_futures=True)
