"""Reusable pytest fixtures: a real broker, the fake Globus service, PostgreSQL, a Slurm cluster.

Plain fixture functions: import them into conftest.py or a test module
(`from tests.support.fixtures import rabbit, fake_globus  # noqa: F401`).
Everything started here is stopped in teardown, so no broker outlives a run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.support.fake_globus import FakeGlobus
from tests.support.postgres import PostgresCluster
from tests.support.rabbitmq import RabbitNode
from tests.support.slurm import SlurmCluster, SlurmUnavailable


@pytest.fixture(scope="session")
def rabbit() -> Iterator[RabbitNode]:
    """One private RabbitMQ node for the whole session (about 3-6 s to start).

    Tests may inject restorable faults (stop_app/start_app,
    close_all_connections) but must undo them, e.g. with ensure_running();
    destructive tests (kill, stop) use `fresh_rabbit` instead.
    """
    node = RabbitNode()
    try:
        node.start()
        yield node
    finally:
        node.close()


@pytest.fixture
def fresh_rabbit() -> Iterator[RabbitNode]:
    """A private RabbitMQ node for one test, free to be crashed or stopped."""
    node = RabbitNode()
    try:
        node.start()
        yield node
    finally:
        node.close()


@pytest.fixture
def fake_globus(rabbit: RabbitNode) -> Iterator[FakeGlobus]:
    """A fresh fake Globus Compute service (mode "execute") publishing to `rabbit`."""
    with FakeGlobus(rabbit.url) as fake:
        yield fake


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One private PostgreSQL cluster for the whole session; a database per test."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """One private one-node Slurm cluster for the whole session (about 1-2 s to start).

    Skipped, with the reason and the daemons' logs, where slurm-wlm or munge
    is missing or the cluster cannot start here. Tests may cancel their own
    jobs; stop() cancels whatever is left before the daemons go.
    """
    cluster = None
    try:
        cluster = SlurmCluster()
        cluster.start()
    except SlurmUnavailable as exc:
        if cluster is not None:
            cluster.stop()  # its temporary directory
        print(exc, file=sys.stderr)
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()
