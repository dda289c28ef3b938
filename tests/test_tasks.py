"""Results, exceptions, dying workers and the futures API, through a real daemon."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from client import Client, Executor, TaskExecutionFailed, TaskPending
from tests.daemon import DaemonProcess


def double(x: int) -> int:
    return x * 2


def collatz_limited(n: int, limit: int = 100) -> list[int]:
    seq = [n]
    while n != 1 and len(seq) < limit:
        n = 3 * n + 1 if n % 2 else n // 2
        seq.append(n)
    if n != 1:
        raise ValueError(f"Sequence not terminated in {limit} steps")
    return seq


class CustomError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"custom failure {code}")
        self.code = code


def raise_custom(code: int) -> None:
    raise CustomError(code)


def exit_worker(code: int) -> None:
    os._exit(code)


def segfault_worker() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def test_results_and_order(executor: Executor) -> None:
    futures = [executor.submit(double, i) for i in range(500)]
    assert [f.result(timeout=60) for f in futures] == [i * 2 for i in range(500)]
    assert all(f.task_id for f in futures)
    assert executor.task_count_submitted == 500


def test_remote_exception_keeps_type_and_traceback(executor: Executor) -> None:
    fut = executor.submit(collatz_limited, 1234567890)
    with pytest.raises(ValueError, match="Sequence not terminated in 100 steps") as info:
        fut.result(timeout=60)
    failure = info.value
    assert isinstance(failure, TaskExecutionFailed)
    assert failure.args == ("Sequence not terminated in 100 steps",)
    assert "collatz_limited" in failure.remote_data
    assert 'raise ValueError(f"Sequence not terminated' in failure.remote_data


def test_one_failure_is_caught_as_task_execution_failed_and_as_its_type(
    executor: Executor,
) -> None:
    """An SDK script's `except TaskExecutionFailed` and an fxgate script's `except ValueError`."""
    fut = executor.submit(collatz_limited, 1234567890)
    try:
        fut.result(timeout=60)
    except TaskExecutionFailed as exc:
        assert "Sequence not terminated in 100 steps" in str(exc)
    else:
        pytest.fail("no TaskExecutionFailed")
    try:
        fut.result(timeout=60)
    except ValueError as exc:
        assert "Traceback" in str(exc)  # the text is the remote traceback, as the SDK's
    else:
        pytest.fail("no ValueError")


def test_custom_exception_attributes_survive(executor: Executor) -> None:
    fut = executor.submit(raise_custom, 7)
    exc = fut.exception(timeout=60)
    assert type(exc).__name__ == "CustomError"
    assert exc.code == 7  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fn", "args", "reason"),
    [
        (exit_worker, (3,), "exited with code 3"),
        (segfault_worker, (), "was killed by SIGSEGV"),
    ],
)
def test_task_that_kills_its_worker_fails_clearly_and_pool_recovers(
    executor: Executor, fn: object, args: tuple[int, ...], reason: str
) -> None:
    before = [executor.submit(double, i) for i in range(50)]
    killer = executor.submit(fn, *args)  # type: ignore[arg-type]
    after = [executor.submit(double, i) for i in range(50)]
    exc = killer.exception(timeout=60)
    assert isinstance(exc, TaskExecutionFailed)
    assert reason in exc.remote_data
    assert "worker process" in exc.remote_data
    assert [f.result(timeout=60) for f in before + after] == [i * 2 for i in range(50)] * 2
    # the pool is whole again: every worker can take work
    more = [executor.submit(double, i) for i in range(200)]
    assert [f.result(timeout=60) for f in more] == [i * 2 for i in range(200)]


def test_done_as_completed_and_wait(executor: Executor) -> None:
    futures = [executor.submit(double, i) for i in range(20)]
    got = sorted(f.result() for f in concurrent.futures.as_completed(futures, timeout=60))
    assert got == sorted(i * 2 for i in range(20))
    done, not_done = concurrent.futures.wait(futures, timeout=60)
    assert len(done) == 20 and not not_done
    assert all(f.done() for f in futures)


def test_done_is_false_while_running(executor: Executor) -> None:
    def wait_for_file(path: str) -> str:
        import pathlib
        import time

        while not pathlib.Path(path).exists():
            time.sleep(0.01)
        return "released"

    gate = os.path.join(os.path.dirname(executor.address.removeprefix("unix://")), "gate")
    fut = executor.submit(wait_for_file, gate)
    assert fut.done() is False
    with open(gate, "w"):
        pass
    assert fut.result(timeout=60) == "released"
    assert fut.done() is True


def test_shutdown_then_submit_is_refused(executor: Executor) -> None:
    executor.shutdown()
    with pytest.raises(RuntimeError):
        executor.submit(double, 1)


def test_shutdown_cancel_futures_cancels_unsent(daemon: DaemonProcess) -> None:
    ex = Executor(endpoint_id="local", address=daemon.address)
    futures = [ex.submit(double, i) for i in range(5000)]
    ex.shutdown(wait=True, cancel_futures=True)
    cancelled = [f for f in futures if f.cancelled()]
    finished = [f for f in futures if not f.cancelled()]
    assert all(f.result() == futures.index(f) * 2 for f in finished[:50])
    assert len(cancelled) + len(finished) == 5000


def test_client_batch_api_and_results(client: Client) -> None:
    fid = client.register_function(double)
    assert client.register_function(double) == fid  # same code, same id
    batch = client.create_batch()
    for i in range(10):
        batch.add(fid, "local", args=(i,))
    ids = client.batch_run(batch)
    assert len(ids) == 10
    with Executor(endpoint_id="local", address=client.address) as ex:
        ex.task_group_id = batch.task_group_id
        futures = ex.reload_tasks()
        assert sorted(f.result(timeout=60) for f in futures) == [i * 2 for i in range(10)]
    assert client.get_result(ids[3]) == 6
    assert client.get_task(ids[0])["status"] == "success"
    assert client.get_task(ids[0].upper())["status"] == "success"  # any spelling of the UUID
    sdk_style = client.batch_run("local", client.create_batch())
    assert sdk_style["tasks"] == {}


def test_get_result_of_unfinished_task_is_pending(client: Client, tmp_path: object) -> None:
    def wait_forever() -> None:
        import time

        time.sleep(3600)

    fid = client.register_function(wait_forever)
    ids = [client.run(endpoint_id="local", function_id=fid) for _ in range(3)]
    with pytest.raises(TaskPending):
        client.get_result(ids[-1])
    # the last two never started (two workers busy): cancel takes them back
    cancelled = client.cancel(ids)
    assert ids[-1] in cancelled
    assert client.get_task(ids[-1])["status"] == "cancelled"


def test_status_counts(client: Client, executor: Executor) -> None:
    futures = [executor.submit(double, i) for i in range(30)]
    futures.append(executor.submit(collatz_limited, 1234567890))
    concurrent.futures.wait(futures, timeout=60)
    status = client.status()
    assert status["tasks"] == {"SUCCESS": 30, "FAILED": 1}
    assert status["task_groups"] == 1
    assert status["upstreams"] == ["local"]
    assert status["max_payload_bytes"] == 10_000_000
    assert status["upstream_status"]["local"].startswith("2 of 2 workers started, 0 tasks at")
    assert status["watchers"] == 1  # the executor's stream


def test_status_command_reads_the_status_socket_without_grpc(
    daemon: DaemonProcess, client: Client, executor: Executor
) -> None:
    assert [executor.submit(double, i).result(timeout=60) for i in range(3)] == [0, 2, 4]
    script = (
        "import json, sys\n"
        "from gateway.cli import main\n"
        f"code = main(['status', '--json', '--address', {daemon.address!r}])\n"
        "print(json.dumps({'code': code, 'grpc': 'grpc' in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    *document, verdict = out.stdout.strip().splitlines()
    assert json.loads(verdict) == {"code": 0, "grpc": False}
    by_command = json.loads("\n".join(document))
    by_rpc = client.status()
    assert by_command.pop("uptime_s") > 0
    by_rpc.pop("uptime_s")
    assert by_command == by_rpc
    assert by_command["tasks"] == {"SUCCESS": 3}
    status_socket = Path(daemon.address.removeprefix("unix://") + ".status")
    assert stat.S_IMODE(status_socket.stat().st_mode) == 0o600


def test_release_group_forgets_it(client: Client, executor: Executor) -> None:
    assert executor.submit(double, 2).result(timeout=60) == 4
    assert client.release_task_group(executor.task_group_id) == 1
    assert client.status()["task_groups"] == 0
