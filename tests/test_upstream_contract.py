"""Every upstream passes tests/upstream_contract.py: the local worker pool, the Globus
upstream (against the fake web service and a real private RabbitMQ) and a cluster
endpoint (Globus Compute's engine with Parsl's LocalProvider: real worker processes)."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from gateway.config import ClusterSettings, GlobusSettings
from gateway.store.records import PendingTask
from gateway.upstreams.base import Upstream
from gateway.upstreams.cluster.upstream import ClusterUpstream
from gateway.upstreams.globus.results import CONNECTION_NAME, ResultStream
from gateway.upstreams.globus.upstream import GlobusUpstream
from gateway.upstreams.globus.web import WebService
from gateway.upstreams.local import LocalUpstream
from tests.support.fake_globus import FakeGlobus
from tests.support.fixtures import fake_globus, rabbit  # noqa: F401
from tests.support.rabbitmq import RabbitNode
from tests.upstream_contract import Harness, UpstreamContract, double

ROOT = Path(__file__).resolve().parent.parent


def held(x: int, gate: str, started: str) -> int:
    """Says it started (a line down the fifo `started`), then waits for `gate` to open."""
    with open(started, "w") as f:
        f.write("started\n")
    with open(gate) as f:
        fcntl.flock(f, fcntl.LOCK_SH)
    return x * 2


class _Gate:
    """Tasks that wait for a file lock the test holds; one worker runs one at a time."""

    def __init__(self, h: Harness, gate: Path, fifo: Path, started: IO[str]) -> None:
        self.h, self.gate, self.fifo, self.started = h, gate, fifo, started

    def task(self, x: int) -> PendingTask:
        return self.h.tasks(held, (x, str(self.gate), str(self.fifo)))[0]

    def wait_started(self, task_id: str) -> None:
        assert self.started.readline() == "started\n"  # only the first task can start


class TestLocalUpstream(UpstreamContract):
    holds_processes = True

    @pytest.fixture(autouse=True)
    def _fifo(self, tmp_path: Path) -> Iterator[None]:
        """A fifo the test holds open for reading and writing: a task never blocks on it."""
        self.fifo = tmp_path / "started"
        os.mkfifo(self.fifo)
        with open(os.open(self.fifo, os.O_RDWR)) as self.started_lines:
            self.gate = tmp_path / "gate"
            self.gate.touch()
            yield

    def new_upstream(self) -> Upstream:
        # One worker: a task running there keeps the next ones queued.
        return LocalUpstream(1, [f"PYTHONPATH={ROOT}"])

    def endpoint_id(self) -> str:
        return "00000000-0000-4000-8000-000000000001"

    @contextmanager
    def stalled(self, h: Harness) -> Iterator[_Gate]:
        with open(self.gate, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield _Gate(h, self.gate, self.fifo, self.started_lines)

    unfinishing = stalled  # the running task is killed at stop; the queued ones wait


@pytest.mark.cluster
class TestClusterUpstream(TestLocalUpstream):
    """The engine with one worker and no queue of its own: a running task keeps the next
    ones in fxgate's queue, where they can be cancelled. The engine runs in a child."""

    @pytest.fixture(autouse=True)
    def _run_dir(self, tmp_path: Path) -> None:
        self.state_dir = tmp_path / "state"

    def new_upstream(self) -> Upstream:
        engine = {
            "type": "GlobusComputeEngine",
            "max_workers_per_node": 1,
            "address": "127.0.0.1",
            "provider": {
                "type": "LocalProvider",
                "init_blocks": 1,
                "min_blocks": 0,
                "max_blocks": 1,
                "worker_init": f"export PYTHONPATH={ROOT}",
            },
        }
        cluster = ClusterSettings("contract", engine, self.endpoint_id(), queue_at_engine=0)
        return ClusterUpstream(cluster, self.state_dir)

    def endpoint_id(self) -> str:
        return "00000000-0000-4000-8000-000000000002"


class _ServiceTasks:
    """Plain tasks; what keeps them from starting or finishing is the fake service."""

    def __init__(self, h: Harness, fake: FakeGlobus, started: int) -> None:
        self.h, self.fake, self.before = h, fake, started

    def task(self, x: int) -> PendingTask:
        return self.h.tasks(double, (x,))[0]


class _HeldSubmits(_ServiceTasks):
    def wait_started(self, task_id: str) -> None:
        assert self.fake.wait_for(lambda: self.fake.submits_held > 0, 60)


class _NotRun(_ServiceTasks):
    def wait_started(self, task_id: str) -> None:
        assert self.fake.wait_for(lambda: len(self.fake.accepted) > self.before, 60)


class TestGlobusUpstream(UpstreamContract):
    holds_connections = True
    helper_threads = ("fake-ep",)  # the fake endpoint's pool, started on first use

    @pytest.fixture(autouse=True)
    def _service(self, fake_globus: FakeGlobus, rabbit: RabbitNode) -> None:  # noqa: F811
        self.fake, self.rabbit = fake_globus, rabbit

    def new_upstream(self) -> Upstream:
        settings = GlobusSettings(
            base_url=self.fake.base_url, token=self.fake.token, batch_interval_ms=5
        )
        web = WebService(settings)
        return GlobusUpstream(settings, web, ResultStream(web.amqp_url, prefetch=100))

    def endpoint_id(self) -> str:
        return self.fake.endpoint_id

    @contextmanager
    def stalled(self, h: Harness) -> Iterator[_HeldSubmits]:
        """A group's first submit is held at the service: its later tasks wait for it."""
        self.fake.hold_submits()
        try:
            yield _HeldSubmits(h, self.fake, 0)
        finally:
            self.fake.release_submits()

    @contextmanager
    def unfinishing(self, h: Harness) -> Iterator[_NotRun]:
        """The service accepts tasks and runs none until the end."""
        self.fake.set_mode("manual")
        yield _NotRun(h, self.fake, len(self.fake.accepted))
        self.fake.run_waiting()

    def connections(self) -> set[str]:
        out = self.rabbit.ctl(
            "list_connections", "--formatter", "json", "name", "client_properties"
        )
        return {
            str(row["name"])
            for row in json.loads(out or "[]")
            if CONNECTION_NAME in json.dumps(row.get("client_properties"))
        }
