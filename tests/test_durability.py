"""Client death, daemon death and sharing, on real processes and a real unix socket."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import signal
import threading
from pathlib import Path

import pytest

from client import Client, Executor, GatewayUnavailable
from tests.daemon import DaemonProcess

# The promises that rest on the store, on each database fxgate supports.
on_both_databases = pytest.mark.parametrize("daemon", ["sqlite", "postgresql"], indirect=True)

SUBMIT_AND_DIE = """
import os, signal, sys, time
from client import Executor

def square(x):
    return x * x

ex = Executor(endpoint_id="local")
futures = [ex.submit(square, i) for i in range(1000)]
while ex.task_count_submitted < 1000:   # the seed's own pattern: accepted, then die
    time.sleep(0.01)
print(ex.task_group_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""

REATTACH = """
import sys
from client import Executor

with Executor(endpoint_id="local", task_group_id=sys.argv[1]) as ex:
    futures = ex.reload_tasks()
    results = sorted(f.result(timeout=120) for f in futures)
print(len(futures), sum(results))
"""


@on_both_databases
def test_client_killed_before_reading_results_loses_nothing(daemon: DaemonProcess) -> None:
    first = daemon.run_script(SUBMIT_AND_DIE)
    assert first.returncode == -signal.SIGKILL, first.stderr
    group_id = first.stdout.strip()
    second = daemon.run_script(REATTACH, group_id)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["1000", str(sum(i * i for i in range(1000)))]


def slow_square(x: int) -> int:
    import time

    time.sleep(0.005)
    return x * x


@on_both_databases
def test_daemon_killed_mid_stream_every_accepted_task_completes(daemon: DaemonProcess) -> None:
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        futures = [ex.submit(slow_square, i) for i in range(1000)]
        done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
        assert done  # tasks are running now
        daemon.kill()
        unfinished_at_crash = sum(not f.done() for f in futures)
        daemon.start()
        # The live client reconnects by itself; no future fails.
        results = [f.result(timeout=180) for f in futures]
        group_id = ex.task_group_id
    assert unfinished_at_crash > 0
    assert results == [i * i for i in range(1000)]
    # A process that re-attaches afterwards gets every result too.
    again = daemon.run_script(REATTACH, group_id)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == ["1000", str(sum(i * i for i in range(1000)))]
    with Client(address=daemon.address) as c:
        group = c.get_task_group(group_id)
    assert len(group["tasks"]) == 1000  # nothing accepted twice
    assert {t["status"] for t in group["tasks"]} == {"success"}


@on_both_databases
def test_daemon_killed_with_tasks_only_accepted_runs_them_after_restart(
    daemon: DaemonProcess,
) -> None:
    with Client(address=daemon.address) as c:
        fid = c.register_function(slow_square)
        batch = c.create_batch()
        for i in range(1000):
            batch.add(fid, "local", args=(i,))
        ids = c.batch_run(batch)  # returns once the tasks are committed
        group_id = batch.task_group_id
    daemon.kill()
    daemon.start()
    out = daemon.run_script(REATTACH, group_id)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1000", str(sum(i * i for i in range(1000)))]
    assert len(ids) == 1000


SHARER = """
import json, os, sys
from client import Client, Executor

def tag(i, me):
    return (me, i)

me = sys.argv[1]
with Executor(endpoint_id="local") as ex:
    futures = [ex.submit(tag, i, me) for i in range(500)]
    results = [f.result(timeout=240) for f in futures]
    group_id = ex.task_group_id
with Client() as c:
    listed = c.get_task_group(group_id)["tasks"]
print(json.dumps({"ok": results == [(me, i) for i in range(500)],
                  "foreign": [r for r in results if r[0] != me][:3],
                  "group_size": len(listed)}))
"""


@on_both_databases
def test_twenty_clients_share_one_daemon(daemon: DaemonProcess) -> None:
    procs = [daemon.popen_script(SHARER, f"client-{n}") for n in range(20)]
    reports = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
            reports.append(json.loads(out))
    finally:
        for p in procs:  # a client waits for its daemon forever: end them on failure
            p.kill()
            p.wait()
    assert all(r["ok"] for r in reports), reports
    assert all(r["foreign"] == [] for r in reports)
    assert [r["group_size"] for r in reports] == [500] * 20
    with Client(address=daemon.address) as c:
        assert c.status()["tasks"] == {"SUCCESS": 10000}


def test_two_processes_watching_one_group_both_see_every_result(daemon: DaemonProcess) -> None:
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        futures = [ex.submit(slow_square, i) for i in range(200)]
        other = daemon.popen_script(REATTACH, ex.task_group_id)
        results = [f.result(timeout=120) for f in futures]
    try:
        out, err = other.communicate(timeout=120)
    finally:
        other.kill()
        other.wait()
    assert other.returncode == 0, err
    assert results == [i * i for i in range(200)]
    assert out.split() == ["200", str(sum(i * i for i in range(200)))]


def test_sigterm_drains_and_exits_zero(daemon: DaemonProcess) -> None:
    assert daemon.stop() == 0
    assert "fxgate stopped" in daemon.log()


def test_second_daemon_on_same_state_dir_refuses(daemon: DaemonProcess) -> None:
    second = DaemonProcess(daemon.state_dir)
    proc = second.spawn()
    assert proc.wait(timeout=60) == 2
    assert "another fxgate daemon" in second.log()
    # the first one still serves
    with Client(address=daemon.address) as c:
        assert c.status()["version"]


def test_socket_is_private(daemon: DaemonProcess) -> None:
    assert daemon.socket.stat().st_mode & 0o777 == 0o600


def test_stale_socket_of_killed_daemon_is_replaced(daemon: DaemonProcess) -> None:
    daemon.kill()
    assert daemon.socket.exists()
    daemon.start()
    with Client(address=daemon.address) as c:
        assert c.status()["version"]


def test_a_daemon_at_its_call_limit_makes_clients_wait_not_fail(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path / "state", extra_env={"FXGATE_MAX_CALLS": "2"})
    d.start()
    try:
        first = Executor(endpoint_id="local", address=d.address)
        second = Executor(endpoint_id="local", address=d.address)
        # each keeps a watch stream open: both of the daemon's call slots are taken
        assert first.submit(slow_square, 2).result(timeout=60) == 4
        assert second.submit(slow_square, 3).result(timeout=60) == 9
        with Executor(endpoint_id="local", address=d.address) as third:
            waiting = third.submit(slow_square, 4)
            assert not waiting.done()
            first.shutdown()  # frees a slot
            assert waiting.result(timeout=60) == 16
        second.shutdown()
    finally:
        assert d.stop() == 0, d.log()


def test_a_new_client_reaches_a_restarted_daemon_at_once(daemon: DaemonProcess) -> None:
    """A client made after a restart connects afresh, even while an older one in the same
    process kept failing through the outage and now waits out its reconnect backoff."""
    stop = threading.Event()
    with Client(address=daemon.address) as old:
        assert old.status()["uptime_s"] >= 0
        assert daemon.stop() == 0

        def keep_failing() -> None:
            while not stop.is_set():
                with contextlib.suppress(GatewayUnavailable):
                    old.status()

        knocker = threading.Thread(target=keep_failing)
        knocker.start()
        try:
            daemon.start()
            for _ in range(20):  # each fresh client must get through at its first call
                with Client(address=daemon.address) as new:
                    assert new.status()["uptime_s"] >= 0
        finally:
            stop.set()
            knocker.join()
