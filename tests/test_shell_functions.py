"""ShellFunction, MPIFunction and ShellResult: fxgate's and the SDK's, locally and via Globus.

Local tasks run in real worker processes of a real daemon, with the SDK installed in
the workers and without it (tests/support/no_sdk.py); MPI tasks under a real mpiexec.
The Globus path is the fake web service running tasks with the endpoint's own
execute_task, so fxgate's objects are loaded there as the SDK's classes. Each fxgate
object's result is compared with that of the SDK's own object built the same way.

The SDK is imported inside the tests only: worker processes import this module to
load its functions by reference, and some of them have no SDK.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import client
from client import Executor, TaskExecutionFailed
from fxgate_contract.serialize import deserialize
from fxgate_contract.states import TaskState
from gateway.store.database import Store
from gateway.store.records import PendingTask, TaskEvent, TaskOptions
from gateway.upstreams.local import LocalUpstream
from tests.daemon import DaemonProcess
from tests.support import no_sdk
from tests.support.fake_globus import FakeGlobus
from tests.support.fixtures import fake_globus, rabbit  # noqa: F401
from tests.upstream_contract import Harness

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ("cmd", "stdout", "stderr", "returncode", "exception_name")
# single quotes: each rank's bash expands the variables, not the one running mpiexec
RANKS_CMD = "bash -c 'echo rank=$OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE'"
TWO_RANKS = ["rank=0 of 2", "rank=1 of 2"]
needs_mpiexec = pytest.mark.skipif(
    shutil.which("mpiexec") is None, reason="no MPI launcher (Debian: openmpi-bin)"
)


def where_am_i() -> dict[str, Any]:
    """What a task sees: the endpoint's variables, its cwd, and whether the SDK is real."""
    import importlib.util

    spec = importlib.util.find_spec("globus_compute_sdk")
    return {
        "uuid": os.environ.get("GC_TASK_UUID"),
        "sandbox": os.environ.get("GC_TASK_SANDBOX_DIR"),
        "cwd": os.getcwd(),
        "real_sdk": spec is not None and spec.origin is not None,
    }


def fields(result: Any) -> dict[str, Any]:
    return {name: getattr(result, name) for name in FIELDS}


def sdk() -> Any:
    import globus_compute_sdk

    return globus_compute_sdk


def both(cls_name: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """fxgate's object and the SDK's, built with the same arguments."""
    return getattr(client, cls_name)(*args, **kwargs), getattr(sdk(), cls_name)(*args, **kwargs)


# ------------------------------------------------------------------ local: a real daemon


@pytest.fixture(scope="session")
def no_sdk_boot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return no_sdk.build(tmp_path_factory.mktemp("no-sdk"))


@pytest.fixture(params=["sdk", "no-sdk"])
def worker_pythonpath(request: pytest.FixtureRequest, no_sdk_boot: Path) -> str:
    """The PYTHONPATH of the workers: the test venv as it is, or the venv minus the SDK."""
    return str(ROOT) if request.param == "sdk" else f"{no_sdk_boot}:{ROOT}"


@pytest.fixture
def shell_daemon(tmp_path: Path, worker_pythonpath: str) -> Iterator[DaemonProcess]:
    """A daemon working in an empty directory of its own."""
    cwd = tmp_path / "daemon-cwd"
    cwd.mkdir()
    env = {"FXGATE_WORKER_ENV": f"PYTHONPATH={worker_pythonpath}"}
    d = DaemonProcess(tmp_path / "state", extra_env=env, cwd=cwd)
    d.start()
    yield d
    assert d.stop() in (0, -9), d.log()


def test_shell_functions_give_the_sdks_results(shell_daemon: DaemonProcess) -> None:
    cases: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
        (
            {"cmd": "echo {word}; echo oops >&2; exit 3"},
            {"word": "hi"},
            {"stdout": "hi\n", "stderr": "oops\n", "returncode": 3},
        ),
        ({"cmd": "seq 1 20", "snippet_lines": 3}, {}, {"stdout": "18\n19\n20\n"}),
        ({"cmd": "sleep 3", "walltime": 0.2}, {}, {"returncode": 124}),
    ]
    with Executor(endpoint_id="local", address=shell_daemon.address) as ex:
        futures = [
            (ex.submit(fx, **kw), ex.submit(ref, **kw), expected)
            for args, kw, expected in cases
            for fx, ref in [both("ShellFunction", **args)]
        ]
        as_dict = [ex.submit(f) for f in both("ShellFunction", "echo d", return_dict=True)]
        for fx_future, ref_future, expected in futures:
            mine, theirs = fx_future.result(timeout=60), ref_future.result(timeout=60)
            assert isinstance(mine, sdk().ShellResult) and isinstance(theirs, sdk().ShellResult)
            assert fields(mine) == fields(theirs)
            assert fields(mine).items() >= expected.items(), mine
        assert [f.result(timeout=60) for f in as_dict] == [
            {
                "cmd": "echo d",
                "stdout": "d\n",
                "stderr": "",
                "returncode": 0,
                "exception_name": None,
            }
        ] * 2
    assert fields(futures[0][0].result())["exception_name"] == "subprocess.CalledProcessError"
    assert fields(futures[2][0].result())["exception_name"] == "subprocess.TimeoutExpired"
    assert list(shell_daemon.cwd.iterdir()) == []


def test_each_task_runs_in_its_own_sandbox_which_is_removed(
    shell_daemon: DaemonProcess, worker_pythonpath: str
) -> None:
    with Executor(endpoint_id="local", address=shell_daemon.address) as ex:
        probes = [ex.submit(where_am_i) for _ in range(3)]
        shells = [ex.submit(f) for f in both("ShellFunction", "echo $GC_TASK_UUID; pwd; ls")]
        seen = [f.result(timeout=60) for f in probes]
        listed = [f.result(timeout=60).stdout.split("\n") for f in shells]
    for future, where in zip(probes, seen, strict=True):
        assert where["uuid"] == future.task_id
        assert where["sandbox"] == where["cwd"]
        assert Path(where["sandbox"]).name == future.task_id
        assert not Path(where["sandbox"]).exists()
        assert where["real_sdk"] == (worker_pythonpath == str(ROOT))
    assert len({w["sandbox"] for w in seen}) == 3
    for future, (task_id, pwd, *files) in zip(shells, listed, strict=True):
        assert task_id == future.task_id and Path(pwd).name == task_id
        # the output files the SDK names after the task, in the sandbox, gone with it
        assert sorted(f.rpartition(".")[2] for f in files if f) == ["stderr", "stdout"]
        assert all(f.startswith(f"{task_id}.") for f in files if f)
        assert not Path(pwd).exists()
    assert list(shell_daemon.cwd.iterdir()) == []


def test_an_mpi_function_without_resource_specification_is_refused_as_the_sdk_refuses(
    shell_daemon: DaemonProcess, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    with Executor(endpoint_id="local", address=shell_daemon.address) as ex:
        futures = [ex.submit(f) for f in both("MPIFunction", f"touch {marker}")]
        for future in futures:
            with pytest.raises(TaskExecutionFailed) as caught:
                future.result(timeout=60)
            text = str(caught.value)
            assert (
                "InvalidResourceSpecification: Invalid Resource Specification Supplied: set()"
                in text
            )
            assert "MPI mode requires optional parsl_resource_specification keyword" in text
    assert not marker.exists()


# ------------------------------------------------- local: MPI with a resource_specification


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.open()
    try:
        yield Harness(store, "00000000-0000-4000-8000-000000000001")
    finally:
        store.close()


def run_locally(
    h: Harness, worker_env: list[str], fns: list[Callable[..., Any]], spec: dict[str, Any]
) -> list[TaskEvent]:
    """Run each function once on an in-process LocalUpstream, with this resource_specification.

    In-process because the resource_specification reaches a task through the
    PendingTask's options, which this builds directly.
    """
    options = TaskOptions(resource_specification=json.dumps(spec))
    tasks: list[PendingTask] = [
        dataclasses.replace(t, options=options) for fn in fns for t in h.tasks(fn, ())
    ]
    upstream = LocalUpstream(2, worker_env)
    h.upstream = upstream.name
    upstream.start(h.ports)
    try:
        upstream.enqueue(tasks)
        finished = h.wait_finished(tasks)
    finally:
        upstream.stop()
    return [finished[t.task_id] for t in tasks]


@needs_mpiexec
@pytest.mark.parametrize("spec", [{"num_ranks": 2}, {"num_nodes": 1, "ranks_per_node": 2}])
def test_an_mpi_function_runs_its_ranks_under_mpiexec(
    harness: Harness, worker_pythonpath: str, spec: dict[str, Any]
) -> None:
    fns = list(both("MPIFunction", RANKS_CMD))
    events = run_locally(harness, [f"PYTHONPATH={worker_pythonpath}"], fns, spec)
    mine, theirs = (deserialize(e.data) for e in events)
    assert [e.state for e in events] == [TaskState.SUCCESS] * 2
    for result in (mine, theirs):
        assert result.returncode == 0, result
        assert result.cmd == f"$PARSL_MPI_PREFIX {RANKS_CMD}"
        assert sorted(result.stdout.splitlines()) == TWO_RANKS


def test_without_mpiexec_on_path_an_mpi_function_fails_before_it_runs(
    harness: Harness, tmp_path: Path
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    marker = tmp_path / "ran"
    env = [f"PYTHONPATH={ROOT}", f"PATH={empty}"]
    events = run_locally(harness, env, [client.MPIFunction(f"touch {marker}")], {"num_ranks": 2})
    assert [e.state for e in events] == [TaskState.FAILED]
    assert "LauncherNotFound" in events[0].data
    assert f"mpiexec is not on the task's PATH ('{empty}')" in events[0].data
    assert not marker.exists()


# ----------------------------------------------------- through the Globus upstream


@pytest.fixture
def fake_endpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[FakeGlobus, DaemonProcess]]:
    """The fake service and a daemon using it; its endpoint works in an empty directory.

    The fake runs execute_task in this process, which chdir()s to the cwd the fake
    was made in: that must be a scratch directory, not the repository.
    """
    run_dir = tmp_path / "endpoint"
    run_dir.mkdir()
    monkeypatch.chdir(run_dir)
    fake: FakeGlobus = request.getfixturevalue("fake_globus")
    d = DaemonProcess(tmp_path / "state", extra_env=fake.daemon_env())
    d.start()
    yield fake, d
    assert d.stop() in (0, -9), d.log()


def test_shell_functions_run_on_the_endpoint_as_the_sdks_own(
    fake_endpoint: tuple[FakeGlobus, DaemonProcess],
) -> None:
    fake, daemon = fake_endpoint
    with Executor(endpoint_id=fake.endpoint_id, address=daemon.address) as ex:
        pairs = [
            [ex.submit(f, word=word) for f in both("ShellFunction", cmd)]
            for cmd, word in [("echo {word}", "hello"), ("echo {word} >&2; exit 2", "bad")]
        ]
        results = [[f.result(timeout=60) for f in pair] for pair in pairs]
    for mine, theirs in results:
        assert isinstance(mine, sdk().ShellResult)
        assert fields(mine) == fields(theirs)
    assert results[0][0].stdout == "hello\n" and results[0][0].returncode == 0
    assert results[1][0].returncode == 2
    assert results[1][0].exception_name == "subprocess.CalledProcessError"


@needs_mpiexec
def test_an_mpi_function_runs_on_the_endpoint_with_its_launcher_prefix(
    fake_endpoint: tuple[FakeGlobus, DaemonProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint's MPI engine sets PARSL_MPI_PREFIX; here, as the local worker would."""
    from gateway.mpi_launch import launcher_env

    for name, value in launcher_env(json.dumps({"num_ranks": 2})).items():
        monkeypatch.setenv(name, value)
    fake, daemon = fake_endpoint
    with Executor(endpoint_id=fake.endpoint_id, address=daemon.address) as ex:
        futures = [ex.submit(f) for f in both("MPIFunction", RANKS_CMD)]
        mine, theirs = (f.result(timeout=60) for f in futures)
    assert type(mine) is type(theirs) is sdk().ShellResult
    for result in (mine, theirs):
        assert result.returncode == 0, result
        assert sorted(result.stdout.splitlines()) == TWO_RANKS


def test_fxgate_objects_pickle_as_the_sdks_classes() -> None:
    from fxgate_contract.serialize import serialize_code, serialize_data

    for cls_name in ("ShellFunction", "MPIFunction"):
        mine, theirs = both(cls_name, "echo {x}", walltime=2.5, name="named", snippet_lines=7)
        loaded = deserialize(serialize_code(mine))
        assert type(loaded) is type(theirs)
        assert vars(loaded) == vars(theirs)
    result = deserialize(serialize_data(client.ShellResult("c", "o", "e", 1, "x")))
    assert type(result) is sdk().ShellResult
    assert fields(result) == {
        "cmd": "c",
        "stdout": "o",
        "stderr": "e",
        "returncode": 1,
        "exception_name": "x",
    }


def test_run_dirs_of_killed_workers_are_removed_at_the_next_start(tmp_path: Path) -> None:
    """A daemon SIGKILLed takes its workers with it and their run directories stay;
    the next daemon's local pool removes them (and leaves a live process's alone)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    live = tmp / f"fxgate-worker-{os.getpid()}-abc"  # a live process's: kept
    live.mkdir()
    d = DaemonProcess(tmp_path / "state", extra_env={"TMPDIR": str(tmp)})
    d.start()
    try:
        with Executor(endpoint_id="local", address=d.address) as ex:
            assert ex.submit(where_am_i).result(timeout=60)["sandbox"].startswith(str(tmp))
        first = {p.name for p in tmp.iterdir()} - {live.name}
        assert first, "the workers made run directories"
    finally:
        d.kill()
    assert first <= {p.name for p in tmp.iterdir()}  # left behind by the SIGKILL
    workers = [int(name.split("-")[2]) for name in first]
    deadline = time.monotonic() + 30  # they die with the daemon (PDEATHSIG), not at once
    while any(psutil.pid_exists(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    d.start()
    try:
        left = {p.name for p in tmp.iterdir()}
        assert not first & left
        assert live.name in left
    finally:
        assert d.stop() == 0, d.log()
