"""The shared stage of one benchmark run: a private broker, the fake web service, daemons.

Every scenario measures fxgate and the SDK against the *same* fake Globus
Compute service (manual mode: it records submitted tasks and runs nothing)
and the *same* real RabbitMQ node, so differences come from the clients, not
from the stage. The fake serves HTTP from this (orchestrating) process; the
measured clients and the result publisher are separate processes. Closing the
environment stops every daemon, helper process, the fake and the node.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pika.exceptions

from bench.procs import Procs, read_json
from tests.daemon import DaemonProcess
from tests.support.fake_globus import AcceptedTask, FakeGlobus
from tests.support.rabbitmq import RabbitNode


@dataclass
class Worker:
    """A client script (bench.worker) that was started, and where it writes its results."""

    name: str
    proc: Any
    out: Path
    timeout: float  # the script gives up waiting for its futures after this many seconds


class BenchEnv:
    """Broker + fake service + daemons + helper processes for one run."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.procs = Procs(workdir / "logs")
        self._rabbit: RabbitNode | None = None
        self._fake: FakeGlobus | None = None
        self._daemons: list[DaemonProcess] = []

    # ------------------------------------------------------------ life
    def __enter__(self) -> BenchEnv:
        self._rabbit = RabbitNode(name_prefix="fxbench")
        self._rabbit.start()
        self._fake = FakeGlobus(self._rabbit.url, mode="manual").start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.procs.close()
        for daemon in self._daemons:
            if daemon.proc is not None and daemon.proc.poll() is None:
                try:
                    daemon.stop(timeout=60)
                except Exception:  # noqa: BLE001 - it must go, one way or the other
                    daemon.kill()
        self._daemons.clear()
        if self._fake is not None:
            self._fake.stop()
            self._fake = None
        if self._rabbit is not None:
            self._rabbit.close()
            self._rabbit = None

    @property
    def rabbit(self) -> RabbitNode:
        assert self._rabbit is not None, "BenchEnv not started"
        return self._rabbit

    @property
    def fake(self) -> FakeGlobus:
        assert self._fake is not None, "BenchEnv not started"
        return self._fake

    # --------------------------------------------------------- daemons
    def daemon(
        self, name: str, *, workers: int = 2, state_dir: Path | None = None
    ) -> DaemonProcess:
        """Start an fxgate daemon whose Globus upstream is the fake; defaults otherwise."""
        d = DaemonProcess(
            state_dir or self.workdir / name,
            workers=workers,
            extra_env={
                "FXGATE_GLOBUS_BASE_URL": self.fake.base_url,
                "FXGATE_GLOBUS_TOKEN": self.fake.token,
            },
        )
        self._daemons.append(d)
        d.start(timeout=300)
        return d

    def stop_daemon(self, daemon: DaemonProcess) -> None:
        code = daemon.stop(timeout=120)
        if code != 0:
            raise RuntimeError(f"daemon exited with {code}:\n{daemon.log()[-3000:]}")

    # ---------------------------------------------------------- clients
    def client_spec(
        self, kind: str, daemon: DaemonProcess | None = None, **fields: Any
    ) -> dict[str, Any]:
        """What a bench.worker needs to reach the service: the daemon, or the fake for the SDK."""
        spec: dict[str, Any] = {"kind": kind, "endpoint_id": self.fake.endpoint_id}
        if kind == "fxgate":
            assert daemon is not None
            spec["address"] = daemon.address
        else:
            spec |= {"base_url": self.fake.base_url, "token": self.fake.token}
        return spec | fields

    def start_worker(self, name: str, spec: dict[str, Any]) -> Worker:
        out = self.workdir / "out" / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        # Generous for the size, but a lost result fails the run in minutes, not hours.
        spec = {"timeout": 120 + spec.get("n", 0) / 500} | spec | {"out": str(out)}
        proc = self.procs.spawn(name, "bench.worker", [json.dumps(spec)])
        return Worker(name, proc, out, spec["timeout"])

    def collect(self, worker: Worker) -> dict[str, Any]:
        """Wait for a worker and read its results (errors inside are reported, not raised)."""
        self.procs.finish(worker.name, worker.proc, 2 * worker.timeout + 60)
        if not worker.out.exists():
            raise RuntimeError(f"{worker.name} wrote no results:\n{self.procs.tail(worker.name)}")
        return read_json(worker.out)

    # ------------------------------------------------------- the service
    def mark(self) -> int:
        """How many tasks the fake accepted so far (tasks after this mark are the scenario's)."""
        return len(self.fake.accepted)

    def await_tasks(
        self, since: int, n: int, workers: Iterable[Worker] = (), timeout: float = 900
    ) -> list[AcceptedTask]:
        """The n tasks accepted upstream after `since`, once all of them were.

        Fails early when one of `workers` (the submitting scripts) ended with an error.
        """
        deadline = time.monotonic() + timeout
        watched = list(workers)
        while not self.fake.wait_for(lambda: len(self.fake.accepted) >= since + n, timeout=1.0):
            self.check_workers(watched)
            if time.monotonic() > deadline:
                got = len(self.fake.accepted) - since
                raise TimeoutError(f"only {got} of {n} tasks reached the service in {timeout} s")
        return self.fake.accepted[since : since + n]

    def check_workers(self, workers: Iterable[Worker]) -> None:
        """Raise if one of these client scripts already ended with an error."""
        for w in workers:
            code = w.proc.poll()
            if code is None:
                continue
            result = read_json(w.out) if w.out.exists() else {"errors": ["no results written"]}
            if code != 0 or not result.get("correct"):
                raise RuntimeError(
                    f"{w.name} failed ({code}): {result.get('errors')}\n{self.procs.tail(w.name)}"
                )

    def wait_consumers(self, queues: Iterable[str], timeout: float = 120) -> None:
        """Wait until every queue has a consumer (the client side is listening)."""
        conn = pika.BlockingConnection(pika.URLParameters(self.rabbit.url))
        try:
            channel = conn.channel()
            deadline = time.monotonic() + timeout
            for queue in sorted(set(queues)):
                while channel.queue_declare(queue, passive=True).method.consumer_count < 1:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no consumer on {queue} after {timeout} s")
                    time.sleep(0.02)
        finally:
            conn.close()

    @property
    def broker_pid(self) -> int:
        """The Erlang VM of the node (its CPU time is the broker's work)."""
        return int(self.rabbit.pid_file.read_text().strip())

    def declare_queue(self, queue: str, *, delete: bool = False) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.rabbit.url))
        try:
            channel = conn.channel()
            if delete:
                channel.queue_delete(queue)
            else:
                channel.queue_declare(queue, durable=True)
        finally:
            conn.close()
