"""The Prometheus metrics endpoint of a real daemon: scraped over HTTP, parsed, held to what ran.

Local tasks on the daemon's workers, Globus tasks on the fake web service
with a real RabbitMQ, a forced broker reconnect, and a metrics port that
cannot be bound. Values are read with prometheus_client's own parser, as a
Prometheus server would read them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from client import Executor
from gateway.config import load
from gateway.errors import ConfigError
from tests.daemon import ROOT, DaemonProcess
from tests.support.fake_globus import FakeGlobus
from tests.support.fixtures import fake_globus, rabbit  # noqa: F401
from tests.support.rabbitmq import RabbitNode, free_ports

N = 40

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def double(x: int) -> int:
    return x * 2


def scrape(port: int) -> Samples:
    """Every sample the endpoint serves, by (sample name, labels)."""
    reply = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(reply.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def wait_for_sample(port: int, name: str, want: float, timeout: float = 60, **labels: str) -> None:
    """Scrape until a sample is `want` (what the daemon does next has no event to await:
    an ack, a submitter's bookkeeping after its commit, a reconnect)."""
    deadline = time.monotonic() + timeout
    while True:
        got = scrape(port).get((name, frozenset(labels.items())))
        if got == want:
            return
        assert time.monotonic() < deadline, f"{name}{labels} is {got}, not {want}"
        time.sleep(0.05)


def metrics_daemon(tmp_path: Path, env: dict[str, str] | None = None) -> tuple[DaemonProcess, int]:
    port = free_ports(1)[0]
    d = DaemonProcess(
        tmp_path / "state", extra_env={"FXGATE_METRICS_PORT": str(port), **(env or {})}
    )
    d.start()
    return d, port


@pytest.fixture
def local_daemon(tmp_path: Path) -> Iterator[tuple[DaemonProcess, int]]:
    d, port = metrics_daemon(tmp_path)
    yield d, port
    assert d.stop() == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


def test_local_tasks_are_counted_by_state_upstream_and_commit(
    local_daemon: tuple[DaemonProcess, int],
) -> None:
    daemon, port = local_daemon
    before = scrape(port)
    assert value(before, "fxgate_tasks", upstream="local", state="success") == 0
    assert value(before, "fxgate_results_received_total", upstream="local") == 0
    with Executor(endpoint_id="local", address=daemon.address, batch_size=10) as ex:
        futures = [ex.submit(double, i) for i in range(N)]
        assert [f.result(timeout=120) for f in futures] == [2 * i for i in range(N)]
        wait_for_sample(port, "fxgate_watchers", 1)  # the executor's one stream is open
        after = scrape(port)
    assert value(after, "fxgate_tasks", upstream="local", state="success") == N
    for state in ("accepted", "submitted", "running", "failed", "cancelled"):
        assert value(after, "fxgate_tasks", upstream="local", state=state) == 0
    assert value(after, "fxgate_task_groups") == 1
    assert value(after, "fxgate_quarantined_messages") == 0
    assert value(after, "fxgate_results_received_total", upstream="local") == N
    assert value(after, "fxgate_upstream_queued_tasks", upstream="local") == 0
    assert value(after, "fxgate_upstream_in_flight_tasks", upstream="local") == 0
    assert value(after, "fxgate_workers", upstream="local") == daemon.workers
    # every Submit call observed once: their tasks add up to what was submitted
    assert value(after, "fxgate_submit_tasks_sum") == N
    assert value(after, "fxgate_submit_tasks_count") >= N / 10
    # commits: at least the Submits' and the results'; each took some time
    commits = value(after, "fxgate_store_commit_seconds_count")
    assert commits >= 2 and value(after, "fxgate_store_commit_seconds_sum") > 0
    assert value(after, "fxgate_store_commit_seconds_bucket", le="+Inf") == commits
    assert value(after, "fxgate_store_commit_writes_count") == commits
    assert value(after, "fxgate_store_commit_writes_sum") >= commits
    assert ("process_resident_memory_bytes", frozenset()) in after
    assert value(after, "fxgate_build_info", version=_version()) == 1


def _version() -> str:
    from gateway import __version__

    return __version__


def test_counts_by_upstream_survive_a_restart(local_daemon: tuple[DaemonProcess, int]) -> None:
    """After a restart the counts come from the database again, still by upstream."""
    daemon, port = local_daemon
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        assert ex.submit(double, 21).result(timeout=120) == 42
    assert daemon.stop() == 0
    daemon.start()
    samples = scrape(port)
    assert value(samples, "fxgate_tasks", upstream="local", state="success") == 1
    assert value(samples, "fxgate_results_received_total", upstream="local") == 0  # since start


@pytest.fixture
def globus_daemon(
    tmp_path: Path,
    fake_globus: FakeGlobus,  # noqa: F811
) -> Iterator[tuple[DaemonProcess, int]]:
    d, port = metrics_daemon(
        tmp_path,
        # the reconnect must be ridden out by streaming, not by HTTP polling
        fake_globus.daemon_env() | {"FXGATE_GLOBUS_BROKER_FALLBACK_S": "600"},
    )
    yield d, port
    assert d.stop() == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


def test_globus_results_acks_and_a_broker_reconnect_are_counted(
    globus_daemon: tuple[DaemonProcess, int],
    fake_globus: FakeGlobus,  # noqa: F811
    rabbit: RabbitNode,  # noqa: F811
) -> None:
    daemon, port = globus_daemon
    with Executor(endpoint_id=fake_globus.endpoint_id, address=daemon.address) as ex:
        futures = [ex.submit(double, i) for i in range(N)]
        assert [f.result(timeout=120) for f in futures] == [2 * i for i in range(N)]
    g = {"upstream": "globus"}
    # results reach the client after their commit; acks and the submitters' own
    # counts follow on their threads
    wait_for_sample(port, "fxgate_broker_acks_total", N, **g)
    wait_for_sample(port, "fxgate_upstream_submitted_tasks_total", N, **g)
    wait_for_sample(port, "fxgate_upstream_in_flight_tasks", 0, **g)
    samples = scrape(port)
    assert value(samples, "fxgate_tasks", state="success", **g) == N
    assert value(samples, "fxgate_tasks", state="submitted", **g) == 0
    assert value(samples, "fxgate_tasks", state="accepted", **g) == 0
    assert value(samples, "fxgate_tasks", upstream="local", state="success") == 0
    assert value(samples, "fxgate_results_received_total", **g) == N
    assert value(samples, "fxgate_results_received_total", upstream="local") == 0
    assert value(samples, "fxgate_upstream_queued_tasks", **g) == 0
    # one message a result; none came twice here, and each was acknowledged once
    assert value(samples, "fxgate_broker_messages_received_total", **g) == N
    assert value(samples, "fxgate_broker_connected", **g) == 1
    assert value(samples, "fxgate_broker_reconnects_total", **g) == 0

    rabbit.close_all_connections()
    wait_for_sample(port, "fxgate_broker_reconnects_total", 1, **g)
    wait_for_sample(port, "fxgate_broker_connected", 1, **g)
    assert value(scrape(port), "fxgate_broker_reconnects_total", **g) == 1


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"FXGATE_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin"}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--local-workers", "1", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_a_metrics_port_in_use_is_a_clear_startup_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = serve(tmp_path, "--metrics-port", str(port))
    assert out.returncode == 2, out.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in out.stderr, out.stderr
    assert "Address already in use" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("port", ["-1", "65536", "ninety"])
def test_a_metrics_port_out_of_range_is_refused(port: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="metrics_port"):
        load(env={"FXGATE_STATE_DIR": str(tmp_path), "FXGATE_METRICS_PORT": port})


def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    settings = load(env={"FXGATE_STATE_DIR": str(tmp_path)})
    assert settings.metrics_port == 0 and settings.metrics_host == "127.0.0.1"
