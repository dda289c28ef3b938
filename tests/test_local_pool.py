"""The local worker pool through a real daemon: no deadlock at any size, workers die with the
daemon, and task code sees a clean environment."""

from __future__ import annotations

import concurrent.futures
import fcntl
import os
import select
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from client import Client, Executor
from gateway.config import load
from gateway.errors import ConfigError
from tests.daemon import DaemonProcess


def identity(x: str) -> str:
    return x


def environ() -> dict[str, str]:
    return dict(os.environ)


def proc_environ() -> bytes:
    with open("/proc/self/environ", "rb") as f:
        return f.read()


def record_then_block_once(runs: str, fifo: str) -> int:
    """Appends its pid to runs; the first run sends its pid down fifo and blocks for good."""
    with open(runs, "a") as f:
        f.write(f"{os.getpid()}\n")
    count = len(Path(runs).read_text().splitlines())
    if count == 1:
        with open(fifo, "w") as f:
            f.write(str(os.getpid()))
        threading.Event().wait()
    return count


def _all_done(futures: Sequence[concurrent.futures.Future[Any]], expected: str) -> None:
    done, pending = concurrent.futures.wait(futures, timeout=120)
    assert not pending, f"{len(pending)} of {len(futures)} tasks never finished"
    assert all(f.result() == expected for f in futures)


def test_fast_tasks_with_8kb_arguments_and_results_all_complete(executor: Executor) -> None:
    # Batches to the workers and results from them both fill the pipes at this size.
    arg = "x" * 8000
    _all_done([executor.submit(identity, arg) for _ in range(2000)], arg)


def held_identity(x: str, gate: str, started: str) -> str:
    """Says it started down the fifo started, then waits for the test to release gate."""
    with open(started, "w") as f:
        f.write("started\n")
    with open(gate) as f:
        fcntl.flock(f, fcntl.LOCK_SH)
    return x


def test_workers_get_megabyte_tasks_one_at_a_time_and_all_complete(
    executor: Executor, client: Client, tmp_path: Path
) -> None:
    # Trivial tasks first: the pool then batches deeply, up to 64 tasks a worker.
    assert [f.result(timeout=60) for f in [executor.submit(identity, "") for _ in range(200)]]
    gate, started = tmp_path / "gate", tmp_path / "started"
    os.mkfifo(started)
    arg = "y" * 1_000_000
    group = client.session_task_group_id
    # Read and write end of the fifo, open until all ran: no task blocks opening it.
    with open(os.open(started, os.O_RDWR)) as lines:
        with open(gate, "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            batch = client.create_batch()
            fid = client.register_function(held_identity)
            for _ in range(20):
                batch.add(fid, "local", (arg, str(gate), str(started)))
            client.batch_run(batch)  # one Submit: the pool gets all 20 at once
            lines.readline()
            lines.readline()  # both workers are in a task
            status = client.status()["upstream_status"]["local"]
            assert "2 tasks at workers, 18 queued" in status
        with Executor(endpoint_id="local", task_group_id=group, address=client.address) as ex:
            _all_done(ex.reload_tasks(), arg)


@pytest.mark.timeout(120)
def test_workers_die_with_the_daemon_and_the_task_runs_once_more(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    runs, fifo = tmp_path / "runs", tmp_path / "fifo"
    os.mkfifo(fifo)
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        fut = ex.submit(record_then_block_once, str(runs), str(fifo))
        with open(fifo) as f:  # returns once the task is running
            pid = int(f.read())
        pidfd = os.pidfd_open(pid)
        try:
            daemon.kill()
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            assert poller.poll(30_000), f"worker pid {pid} outlived the daemon"
        finally:
            os.close(pidfd)
        daemon.start()
        assert fut.result(timeout=60) == 2
    assert len(runs.read_text().splitlines()) == 2


SECRETS = {
    "FXGATE_AUTH_TOKEN": "secret-auth-token-0123456789",
    "FXGATE_GLOBUS_TOKEN": "secret-globus-token-0123456789",
    "FXGATE_GLOBUS_BASE_URL": "http://127.0.0.1:9",
    "GLOBUS_COMPUTE_CLIENT_SECRET": "secret-client-secret-0123456789",
    "SOME_OTHER_PASSWORD": "secret-password-0123456789",
}


@pytest.fixture
def secret_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = DaemonProcess(
        tmp_path / "state",
        extra_env=SECRETS
        | {"FXGATE_WORKER_ENV": "TASK_SETTING TASK_FIXED=fixed-value", "TASK_SETTING": "on"},
    )
    d.start()
    yield d
    assert d.stop() == 0, d.log()


def test_task_code_sees_no_daemon_secrets_only_what_is_passed_on(
    secret_daemon: DaemonProcess,
) -> None:
    with Executor(endpoint_id="local", address=secret_daemon.address) as ex:
        env = ex.submit(environ).result(timeout=60)
        raw = ex.submit(proc_environ).result(timeout=60)
    exec_env = dict(entry.split(b"=", 1) for entry in raw.split(b"\0") if entry)
    for name, value in SECRETS.items():
        assert name not in env
        assert value.encode() not in raw
    assert not [k for k in env if k.startswith(("FXGATE_", "GLOBUS_"))]
    assert env["TASK_SETTING"] == "on" and exec_env[b"TASK_SETTING"] == b"on"
    assert env["TASK_FIXED"] == "fixed-value" and exec_env[b"TASK_FIXED"] == b"fixed-value"
    assert env["PATH"] == os.environ["PATH"]


def test_worker_env_comes_from_file_or_environment_and_refuses_daemon_names(
    tmp_path: Path,
) -> None:
    env = {"FXGATE_STATE_DIR": str(tmp_path)}
    (tmp_path / "config.toml").write_text('worker_env = ["HTTP_PROXY", "GREETING=a b"]\n')
    assert load(env=env).worker_env == ["HTTP_PROXY", "GREETING=a b"]
    env["FXGATE_WORKER_ENV"] = "OMP_NUM_THREADS=1  HTTP_PROXY"
    assert load(env=env).worker_env == ["OMP_NUM_THREADS=1", "HTTP_PROXY"]
    for bad in ("FXGATE_GLOBUS_TOKEN", "globus_sdk_secret=x"):
        with pytest.raises(ConfigError, match="refused: FXGATE_. and GLOBUS_."):
            load(env=env | {"FXGATE_WORKER_ENV": bad})
    with pytest.raises(ConfigError, match="is not NAME or NAME=value"):
        load(env=env | {"FXGATE_WORKER_ENV": "=x"})
    (tmp_path / "config.toml").write_text("worker_env = [1]\n")
    with pytest.raises(ConfigError, match="'worker_env' must be of type list"):
        load(env={"FXGATE_STATE_DIR": str(tmp_path)})
