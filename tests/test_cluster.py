"""Cluster endpoints through a real daemon: Globus Compute's engine with Parsl's
LocalProvider (real interchange, real worker processes), driven by the engine child.

The Slurm cluster fixture is separate (tests/support/slurm.py); these tests
show the daemon's side on the provider that needs no scheduler.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import config
from gateway.errors import ConfigError
from tests.daemon import DaemonProcess
from tests.support.fake_globus import FakeGlobus
from tests.support.fixtures import fake_globus, rabbit  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
N = 1000  # the issue: "in the middle of 1,000 tasks"

CLUSTER = """
[cluster.testhpc]
engine = "GlobusComputeEngine"
max_workers_per_node = 2
address = "127.0.0.1"
heartbeat_period = 1
heartbeat_threshold = 4
max_retries_on_system_failure = {retries}

[cluster.testhpc.provider]
type = "LocalProvider"
init_blocks = 1
min_blocks = 0
max_blocks = 1
worker_init = "export PYTHONPATH={root}"
"""


def cluster_daemon(tmp_path: Path, retries: int = 1) -> DaemonProcess:
    state = tmp_path / "state"
    state.mkdir()
    (state / "config.toml").write_text(CLUSTER.format(retries=retries, root=ROOT))
    return DaemonProcess(state, workers=1)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = cluster_daemon(tmp_path)
    d.start(timeout=120)
    try:
        yield d
    finally:
        d.stop()


def engine_processes(state_dir: Path) -> list[int]:
    """Pids of processes that belong to a cluster endpoint of this state dir: the engine
    child, the interchange (its working directory) and workers (their command lines)."""
    found = []
    marker = str(state_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if marker in cmdline or cwd.startswith(marker):
            found.append(int(entry.name))
    return found


def engine_child(daemon: DaemonProcess) -> int:
    assert daemon.proc is not None
    children = Path(f"/proc/{daemon.proc.pid}/task/{daemon.proc.pid}/children")
    for task in Path(f"/proc/{daemon.proc.pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            if b"engine_child" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
    raise AssertionError(f"no engine child under the daemon ({children})")


RUN = """
import sys
from client import Client, Executor

def square(x):
    return x * x

def fails(x):
    raise ValueError(f"remote failure {x}")

listed = {e["name"]: e["uuid"] for e in Client().get_endpoints()}
for endpoint in ("testhpc", listed["testhpc"]):
    with Executor(endpoint_id=endpoint) as ex:
        futures = [ex.submit(square, i) for i in range(int(sys.argv[1]))]
        print(endpoint, sum(f.result(timeout=180) for f in futures))
with Executor(endpoint_id="testhpc") as ex:
    try:
        ex.submit(fails, 7).result(timeout=120)
    except ValueError as exc:
        print("raised", type(exc).__name__, "remote failure 7" in str(exc), "Traceback" in str(exc))
    # resource_specification reaches engine.submit: HTEX takes priority, refuses the rest
    ex.resource_specification = {"priority": 1}
    print("priority", ex.submit(square, 5).result(timeout=120))
    ex.resource_specification = {"num_nodes": 2}
    try:
        ex.submit(square, 5).result(timeout=120)
    except Exception as exc:
        print("refused", "InvalidResourceSpecification" in str(exc), "num_nodes" in str(exc))
"""


@pytest.mark.cluster
def test_tasks_by_name_and_by_uuid_come_back_a_failure_raises_and_options_reach_the_engine(
    daemon: DaemonProcess,
) -> None:
    out = daemon.run_script(RUN, str(N))
    assert out.returncode == 0, out.stderr + daemon.log()
    lines = out.stdout.splitlines()
    total = str(sum(i * i for i in range(N)))
    assert lines[0] == f"testhpc {total}"
    name, value = lines[1].split()
    assert name != "testhpc" and value == total  # the endpoint's UUID
    assert lines[2] == "raised ValueError True True"
    assert lines[3:] == ["priority 25", "refused True True"]
    status = fxgate_status(daemon)
    assert "testhpc" in status and "workers" in status, status


def fxgate_status(daemon: DaemonProcess) -> str:
    """What `fxgate status` prints for this daemon."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "status"],
        capture_output=True,
        text=True,
        env=daemon.env,
        cwd=ROOT,
    ).stdout


SUBMIT = """
import sys, time
from client import Executor

def slow_square(x):
    import time
    time.sleep(0.02)
    return x * x

ex = Executor(endpoint_id="testhpc")
futures = [ex.submit(slow_square, i) for i in range(int(sys.argv[1]))]
while ex.task_count_submitted < len(futures):
    time.sleep(0.01)
print(ex.task_group_id, flush=True)
done = 0
for f in futures:
    f.result(timeout=300)
    done += 1
    if done == len(futures) // 5:
        print("fifth", flush=True)
print("all", flush=True)
ex.shutdown(cancel_futures=True)
"""

REATTACH = """
import sys
from client import Executor

with Executor(endpoint_id="testhpc", task_group_id=sys.argv[1]) as ex:
    futures = ex.reload_tasks()
    results = [f.result(timeout=300) for f in futures]
print(len(futures), sum(results))
"""


# Engine start-up (interchange, workers) takes 12-20 s on a quiet 2-core machine and
# several times that under load; a fault test waits for two starts.
SLOW_START = pytest.mark.timeout(600)


@pytest.mark.cluster
@SLOW_START
def test_sigkill_of_the_engine_child_mid_run_every_task_completes_once(
    daemon: DaemonProcess,
) -> None:
    run = daemon.popen_script(SUBMIT, str(N))
    assert run.stdout is not None
    group_id = run.stdout.readline().strip()
    assert run.stdout.readline() == "fifth\n", run.stderr.read() if run.stderr else ""
    child = engine_child(daemon)
    os.kill(child, signal.SIGKILL)
    assert run.stdout.readline() == "all\n", daemon.log()
    assert run.wait(60) == 0
    again = daemon.run_script(REATTACH, group_id)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == [str(N), str(sum(i * i for i in range(N)))]
    assert "engine child was killed by SIGKILL" in daemon.log()
    assert engine_child(daemon) != child


@pytest.mark.cluster
@SLOW_START
def test_sigkill_of_the_daemon_mid_run_leaves_no_engine_and_every_task_completes(
    tmp_path: Path,
) -> None:
    d = cluster_daemon(tmp_path)
    d.start(timeout=120)
    run = d.popen_script(SUBMIT, str(N))
    try:
        assert run.stdout is not None
        group_id = run.stdout.readline().strip()
        assert run.stdout.readline() == "fifth\n"
        assert engine_processes(d.state_dir)  # the child, its interchange and workers
        d.kill()
    finally:
        run.kill()
        run.wait()
    # Nothing to await from outside: the child shuts its engine down on SIGTERM.
    deadline = time.monotonic() + 60
    while engine_processes(d.state_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert engine_processes(d.state_dir) == []
    d.start(timeout=120)
    try:
        again = d.run_script(REATTACH, group_id)
        assert again.returncode == 0, again.stderr + d.log()
        assert again.stdout.split() == [str(N), str(sum(i * i for i in range(N)))]
    finally:
        d.stop()


def test_a_bad_engine_key_refuses_to_start_naming_it(tmp_path: Path) -> None:
    d = cluster_daemon(tmp_path)
    path = d.state_dir / "config.toml"
    path.write_text(path.read_text().replace("init_blocks", "init_blokcs"))
    proc = d.spawn()
    assert proc.wait(120) == 2
    assert "[cluster.testhpc]" in d.log() and "init_blokcs" in d.log(), d.log()
    assert "Traceback" not in d.log()


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('[cluster.x]\nengine = "HTEX"\n[cluster.x.provider]\ntype = "LocalProvider"', "x.engine"),
        ('[cluster.x]\nengine = "GlobusComputeEngine"', "cluster.x.provider"),
        (
            '[cluster.x]\nengine = "GlobusComputeEngine"\nendpoint_id = "nope"\n'
            '[cluster.x.provider]\ntype = "LocalProvider"',
            "cluster.x.endpoint_id",
        ),
        (
            '[cluster.x]\nengine = "GlobusComputeEngine"\nmax_retries_on_system_failure = "1"\n'
            '[cluster.x.provider]\ntype = "LocalProvider"',
            "max_retries_on_system_failure",
        ),
        (
            '[cluster.x]\nengine = "GlobusComputeEngine"\ntype = "GlobusMPIEngine"\n'
            '[cluster.x.provider]\ntype = "LocalProvider"',
            "cluster.x.type",
        ),
        (
            '[cluster.local]\nengine = "GlobusComputeEngine"\n[cluster.local.provider]\n'
            'type = "LocalProvider"',
            "cluster.local",
        ),
        (
            '[cluster.x]\nengine = "GlobusComputeEngine"\n[cluster.x.provider]\n'
            'type = "LocalProvider"\nlauncher = "SrunLauncher"',
            "cluster.x.provider.launcher",
        ),
    ],
)
def test_the_daemon_checks_what_it_can_without_the_engine(
    tmp_path: Path, table: str, named: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(table)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        config.load(path, env={})


def test_a_cluster_table_becomes_the_engine_table_of_an_endpoint_config() -> None:
    path_text = CLUSTER.format(retries=2, root="/x")
    tables = __import__("tomllib").loads(path_text)["cluster"]
    found = config.clusters(tables)["testhpc"]
    assert found.engine["type"] == "GlobusComputeEngine"
    assert found.engine["max_retries_on_system_failure"] == 2
    assert found.engine["provider"]["type"] == "LocalProvider"
    assert found.endpoint_id == "" and found.queue_at_engine == config.DEFAULT_QUEUE_AT_ENGINE


def raised(exc: Exception) -> Exception:
    """The exception with a traceback, as the engine holds the ones its tasks raised."""
    try:
        raise exc
    except Exception as caught:  # noqa: BLE001 - the point
        return caught


def test_a_task_lost_with_its_node_fails_as_worker_lost_with_the_engines_text() -> None:
    """The Result the engine packs for a task whose manager was lost (after its retries),
    decoded by the daemon's side: WorkerLost, with the engine's traceback text kept."""
    import uuid

    from globus_compute_common import messagepack
    from globus_compute_common.messagepack.message_types import TaskTransition
    from globus_compute_common.tasks import ActorName, TaskState
    from globus_compute_endpoint.engines.base import GlobusComputeEngineBase
    from parsl.executors.high_throughput.errors import ManagerLost

    from gateway.upstreams.cluster.upstream import completion

    task_id = uuid.uuid4()
    begin = TaskTransition(timestamp=1, actor=ActorName.INTERCHANGE, state=TaskState.EXEC_START)
    lost = [raised(ManagerLost(b"m1", "node7")), raised(ManagerLost(b"m2", "node8"))]  # a retry
    result = GlobusComputeEngineBase._handle_task_exception(None, task_id, begin, lost)
    found = completion(str(task_id), messagepack.pack(result))
    assert found.task_id == str(task_id) and found.upstream_task_id is None
    assert found.error_code == "WorkerLost"
    assert "max_retries_on_system_failure" in found.error_message
    assert "loss of manager m2 on host node8" in found.data  # the engine's own text
    user = GlobusComputeEngineBase._handle_task_exception(
        None, task_id, begin, [raised(KeyError("x"))]
    )
    assert completion(str(task_id), messagepack.pack(user)).error_code == "RemoteExecutionError"


CANCEL = """
import json, pathlib, sys, time
from concurrent.futures import CancelledError
from client import Client, Executor

def hold(marks, x):
    import pathlib, time
    marks = pathlib.Path(marks)
    (marks / f"started-{x}").touch()
    while not (marks / "go").exists():
        time.sleep(0.05)
    return x

marks = pathlib.Path(sys.argv[1])
with Executor(endpoint_id="testhpc") as ex:
    held = [ex.submit(hold, str(marks), x) for x in (0, 1)]  # one at each of the 2 workers
    while len(list(marks.glob("started-*"))) < 2:
        time.sleep(0.05)
    queued = [ex.submit(hold, str(marks), x) for x in (2, 3, 4)]
    while ex.task_count_submitted < 5:
        time.sleep(0.05)
    outcomes = Client().cancel_outcomes([f.task_id for f in held + queued])
    (marks / "go").touch()
    print(json.dumps([[o["outcome"], o["message"]] for o in outcomes]))
    print(json.dumps([f.result(timeout=60) for f in held]))
    print(json.dumps([f.cancelled() for f in queued]))
    for f in queued:
        try:
            f.result(timeout=60)
        except CancelledError:
            pass
"""


def test_cancel_withdraws_tasks_fxgate_still_queues_and_says_why_the_engines_run_on(
    tmp_path: Path,
) -> None:
    """With queue_at_engine = 0, tasks beyond the workers wait in fxgate, where a cancel
    withdraws them; the engine cannot withdraw what it holds, and the answer says so."""
    import json

    state = tmp_path / "state"
    state.mkdir()
    config_text = CLUSTER.format(retries=0, root=ROOT).replace(
        "[cluster.testhpc]\n", "[cluster.testhpc]\nqueue_at_engine = 0\n"
    )
    (state / "config.toml").write_text(config_text)
    marks = tmp_path / "marks"
    marks.mkdir()
    d = DaemonProcess(state, workers=1)
    d.start(timeout=120)
    try:
        out = d.run_script(CANCEL, str(marks))
        assert out.returncode == 0, out.stderr + d.log()
        outcomes, held, queued = (json.loads(line) for line in out.stdout.splitlines())
    finally:
        d.stop()
    assert [o for o, _ in outcomes] == ["running_cannot_stop"] * 2 + ["cancelled"] * 3
    assert "cannot withdraw a task it holds" in outcomes[0][1]
    assert held == [0, 1] and queued == [True, True, True]
    assert sorted(p.name for p in marks.glob("started-*")) == ["started-0", "started-1"]


TWO_CLUSTERS = """
[cluster.{name}]
engine = "GlobusComputeEngine"
max_workers_per_node = 1
address = "127.0.0.1"

[cluster.{name}.provider]
type = "LocalProvider"
init_blocks = 1
min_blocks = 0
max_blocks = 1
worker_init = "export PYTHONPATH={root} FXGATE_TEST_WHERE={name}"
"""

EVERYWHERE = """
import json, sys
from client import Client, Executor

def where(x):
    import os
    return x, os.environ.get("FXGATE_TEST_WHERE", "")

endpoints = ["one", "two", "local", sys.argv[1]]
executors = {e: Executor(endpoint_id=e) for e in endpoints}
futures = {e: [ex.submit(where, i) for i in range(50)] for e, ex in executors.items()}
results = {e: [f.result(timeout=300) for f in fs] for e, fs in futures.items()}
print(json.dumps({e: sorted({w for _, w in rs}) for e, rs in results.items()}))
print(json.dumps({e: sum(x for x, _ in rs) for e, rs in results.items()}))
print(json.dumps(sorted(e["name"] for e in Client().get_endpoints())))
for ex in executors.values():
    ex.shutdown()
"""


@pytest.mark.cluster
@SLOW_START
def test_two_cluster_endpoints_run_beside_the_local_pool_and_the_globus_upstream(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One daemon, four upstreams at once: each cluster endpoint's tasks run in its own
    engine's workers, and `fxgate status` describes both clusters."""
    import json

    endpoint_dir = tmp_path / "endpoint"  # the fake endpoint runs tasks in this process
    endpoint_dir.mkdir()
    monkeypatch.chdir(endpoint_dir)
    fake: FakeGlobus = request.getfixturevalue("fake_globus")
    state = tmp_path / "state"
    state.mkdir()
    config_text = "".join(TWO_CLUSTERS.format(name=n, root=ROOT) for n in ("one", "two"))
    (state / "config.toml").write_text(config_text)
    d = DaemonProcess(state, workers=1, extra_env=fake.daemon_env())
    d.start(timeout=120)
    try:
        out = d.run_script(EVERYWHERE, fake.endpoint_id)
        assert out.returncode == 0, out.stderr + d.log()
        where, sums, listed = (json.loads(line) for line in out.stdout.splitlines())
        status = fxgate_status(d)
    finally:
        d.stop()
    assert where == {"one": ["one"], "two": ["two"], "local": [""], fake.endpoint_id: [""]}
    assert set(sums.values()) == {sum(range(50))}
    assert {"one", "two"} <= set(listed)
    for name in ("one", "two"):
        line = next(x for x in status.splitlines() if f"upstream {name}:" in x)
        assert "GlobusComputeEngine, LocalProvider" in line and "workers" in line, status
        # every result is in: the daemon's own count, not the engine's last report
        assert "0 tasks at the engine (0 waiting for a worker)" in line, line


class _RecordingEngine:
    """Takes tasks as GlobusComputeEngine.submit does and keeps their futures."""

    def __init__(self) -> None:
        self.futures: list[Any] = []

    def submit(self, task_f: Any, packed_task: bytes, **_: Any) -> None:
        self.futures.append(task_f)


def _messages(sock: socket.socket, count: int) -> list[dict[str, Any]]:
    from gateway.upstreams.cluster.wire import take

    buf, out = bytearray(), []
    sock.settimeout(30)
    while len(out) < count:
        buf += sock.recv(1 << 16)
        out += take(buf)
    return out


def test_the_engine_child_sends_a_lone_result_at_once_and_a_stream_of_them_together() -> None:
    """Results the engine finishes while tasks wait for a worker go to the daemon in one
    message (the gather thread's); a result with none behind it is sent by the engine's
    own callback, without waiting."""
    from gateway.upstreams.cluster.engine_child import Child

    ours, theirs = socket.socketpair()
    engine = _RecordingEngine()
    child = Child(ours, engine)
    child._workers = 1  # as the engine's status reports it (report thread, not run here)
    task_ids = [str(uuid.uuid4()) for _ in range(8)]
    function_id = str(uuid.uuid4())
    child.submit([[t, function_id, "code", "payload", "", []] for t in task_ids[:3]])
    first, second, third = engine.futures
    first.set_result(b"1")  # two still held, one worker: more on their way, so it waits
    second.set_result(b"2")  # one held, one worker: nothing waits behind it: sent now
    (message,) = _messages(theirs, 1)
    assert [tid for tid, _ in message["results"]] == task_ids[:2]
    third.set_result(b"3")
    (message,) = _messages(theirs, 1)
    assert [tid for tid, _ in message["results"]] == [task_ids[2]]

    child.submit([[t, function_id, "", "payload", "", []] for t in task_ids[3:]])
    gather = threading.Thread(target=child.gather, daemon=True)
    gather.start()
    with child._results:  # the gather thread waits until all three are in
        for future in engine.futures[3:6]:  # two still held behind them: a stream
            future.set_result(b"x")
    (message,) = _messages(theirs, 1)
    assert [tid for tid, _ in message["results"]] == task_ids[3:6]
    child._done.set()
    gather.join(timeout=10)
    ours.close()
    theirs.close()


ONE_TASK = """
from client import Executor

with Executor(endpoint_id="testhpc") as ex:
    print(ex.submit(abs, -3).result(timeout=300))
"""


@pytest.mark.cluster
@SLOW_START
def test_an_engine_child_told_to_stop_again_while_stopping_still_ends_its_engine(
    tmp_path: Path,
) -> None:
    """The parent-death signal can arrive twice: a second SIGTERM during the child's
    cleanup once skipped the engine's shutdown and left its interchange and workers."""
    d = cluster_daemon(tmp_path)
    d.start(timeout=120)
    try:
        out = d.run_script(ONE_TASK)
        assert out.stdout == "3\n", out.stderr + d.log()  # the engine and its workers are up
        child = engine_child(d)
    finally:
        d.kill()  # the child gets SIGTERM as its parent dies, and twice more here
    for _ in range(2):
        with contextlib.suppress(ProcessLookupError):  # it may have finished already
            os.kill(child, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while engine_processes(d.state_dir) and time.monotonic() < deadline:
        time.sleep(0.2)  # nothing to await: the processes are not this test's children
    assert engine_processes(d.state_dir) == []
