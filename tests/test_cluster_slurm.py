"""A cluster endpoint of a real daemon on the private Slurm cluster, end to end.

Tasks go through `client.Executor(endpoint_id="hpc")` to the daemon, its engine
child and Parsl's SlurmProvider, and run in a Slurm job that provider asked for
(squeue while running, the job-completion log after). A block cancelled under
running tasks and a daemon killed under them both end with every task done
once, and a dead daemon leaves nothing queued on the cluster.

The first N // 5 tasks run to the end; the rest are submitted then, each says
when it runs and waits for a `go` file the test makes once the fault is over:
the fault always lands on running tasks, in the middle of the run.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.daemon import DaemonProcess
from tests.support.fixtures import slurm  # noqa: F401
from tests.support.slurm import SlurmCluster

# Block and engine start-ups take seconds each here, several times that under load.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
N = 1000  # the issue: "in the middle of 1,000 tasks"
# A block starts in seconds here, several times that on a loaded machine.
BLOCK_TIMEOUT_S = 120

# One block of one node at a time, its state polled every second.
SLURM_PROVIDER = """
[cluster.NAME.provider]
type = "SlurmProvider"
partition = "{partition}"
nodes_per_block = 1
init_blocks = 1
min_blocks = 0
max_blocks = 1
walltime = "00:05:00"
status_polling_interval = 1
worker_init = "export PYTHONPATH={root}"
"""

CLUSTER = """
[cluster.hpc]
engine = "GlobusComputeEngine"
max_workers_per_node = 2
address = "127.0.0.1"
heartbeat_period = 1
heartbeat_threshold = {threshold}
max_retries_on_system_failure = 1
job_status_kwargs = {{ strategy_period = 1 }}

""" + SLURM_PROVIDER.replace("NAME", "hpc")


def slurm_daemon(state: Path, cluster: SlurmCluster, threshold: int = 5) -> DaemonProcess:
    """A daemon whose `hpc` endpoint asks the private cluster for one block at a time.

    `threshold`: seconds a block's workers wait for a silent interchange before they
    leave (and the engine waits for silent workers before it calls them lost)."""
    state.mkdir()
    config = CLUSTER.format(partition=cluster.partition, root=ROOT, threshold=threshold)
    (state / "config.toml").write_text(config)
    env = cluster.env()
    return DaemonProcess(
        state, workers=1, extra_env={"SLURM_CONF": env["SLURM_CONF"], "PATH": env["PATH"]}
    )


@pytest.fixture
def daemon(tmp_path: Path, slurm: SlurmCluster) -> Iterator[DaemonProcess]:  # noqa: F811
    d = slurm_daemon(tmp_path / "state", slurm)
    d.start(timeout=120)
    try:
        yield d
    finally:
        d.stop()


def block_ids(cluster: SlurmCluster) -> set[str]:
    """Jobs in squeue that Parsl's SlurmProvider submitted (its job names start `parsl.`)."""
    return {job.job_id for job in cluster.squeue_jobs() if job.name.startswith("parsl.")}


WHERE = """
import sys
from client import Executor

def job_of(x):
    import os
    return x, os.environ["SLURM_JOB_ID"]

with Executor(endpoint_id="hpc") as ex:
    futures = [ex.submit(job_of, i) for i in range(int(sys.argv[1]))]
    for f in futures:
        x, job = f.result(timeout=240)
        print(x, job)
"""


def test_tasks_run_in_the_slurm_job_the_provider_asked_for(
    daemon: DaemonProcess,
    slurm: SlurmCluster,  # noqa: F811
) -> None:
    out = daemon.run_script(WHERE, "20")
    assert out.returncode == 0, out.stderr + daemon.log()
    pairs = [line.split() for line in out.stdout.splitlines()]
    assert [int(x) for x, _ in pairs] == list(range(20))
    (job,) = {job for _, job in pairs}
    running = {j.job_id: j for j in slurm.squeue_jobs()}
    assert running[job].state == "RUNNING" and running[job].name.startswith("parsl.")
    assert daemon.stop() == 0
    assert slurm.wait_until_ended(job).state == "CANCELLED"
    assert slurm.squeue_jobs() == []


SUBMIT = """
import sys
import time
from client import Executor

def step(x, marks):
    import os, pathlib, time
    time.sleep(0.01)
    if x >= {fifth}:  # the fault's side: says it runs, then waits until the fault is over
        marks = pathlib.Path(marks)
        (marks / f"started-{{x}}").touch()
        deadline = time.monotonic() + 240
        while not (marks / "go").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("no go")
            time.sleep(0.05)
    return x, os.environ["SLURM_JOB_ID"]

ex = Executor(endpoint_id="hpc")
futures = [ex.submit(step, i, sys.argv[1]) for i in range({fifth})]
print(ex.task_group_id, flush=True)
for f in futures:  # the first fifth done, the block is warm
    print(*f.result(timeout=300), flush=True)
print("fifth", flush=True)
rest = [ex.submit(step, i, sys.argv[1]) for i in range({fifth}, {n})]
while ex.task_count_submitted < {n}:  # all durable in the daemon: a fault loses none
    time.sleep(0.05)
print("accepted", flush=True)
for f in rest:
    print(*f.result(timeout=300), flush=True)
print("all", flush=True)
ex.shutdown()
""".format(n=N, fifth=N // 5)

REATTACH = """
import sys
from client import Executor

with Executor(endpoint_id="hpc", task_group_id=sys.argv[1]) as ex:
    futures = ex.reload_tasks()
    for f in futures:
        x, job = f.result(timeout=240)
        print(x, job)
"""


def started(marks: Path) -> bool:
    """Whether a task of the rest has begun running (on a worker of a block)."""
    return any(marks.glob("started-*"))


def read_until(stream: IO[str], line: str) -> list[str]:
    """Lines of a script's stdout before `line` (which must come)."""
    seen = []
    for got in iter(stream.readline, ""):
        if got == line + "\n":
            return seen
        seen.append(got.strip())
    raise AssertionError(f"{line!r} never came; got {seen[-5:]}")


def test_scancel_of_the_running_block_mid_run_every_task_completes_once(
    daemon: DaemonProcess,
    slurm: SlurmCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    run = daemon.popen_script(SUBMIT, str(tmp_path))
    try:
        assert run.stdout is not None
        group_id = run.stdout.readline().strip()
        before = read_until(run.stdout, "fifth")
        (first,) = {job for _, job in (line.split() for line in before)}
        assert first in block_ids(slurm)
        slurm.wait_for(lambda: started(tmp_path), "a task of the rest to run", BLOCK_TIMEOUT_S)
        slurm.scancel(first)
        assert slurm.wait_until_ended(first, BLOCK_TIMEOUT_S).state == "CANCELLED"
        (tmp_path / "go").touch()
        accepted = read_until(run.stdout, "accepted")  # results of the first fifth: none
        after = accepted + read_until(run.stdout, "all")
        assert run.wait(60) == 0, run.stderr.read() if run.stderr else ""
    finally:
        run.kill()
        run.wait()
    results = [line.split() for line in before + after]
    assert [int(x) for x, _ in results] == list(range(N)), "each task's result once, in order"
    later = {job for x, job in results if int(x) >= N // 5}
    assert later and first not in later  # every task after the cancel ran on a new block
    again = daemon.run_script(REATTACH, group_id)
    assert again.returncode == 0, again.stderr
    # The group's tasks come back in the store's order, not necessarily the submission's.
    assert sorted(int(line.split()[0]) for line in again.stdout.splitlines()) == list(range(N))


def test_sigkill_of_the_daemon_mid_run_leaves_nothing_queued_and_every_task_completes(
    tmp_path: Path,
    slurm: SlurmCluster,  # noqa: F811
) -> None:
    d = slurm_daemon(tmp_path / "state", slurm)
    d.start(timeout=120)
    run = d.popen_script(SUBMIT, str(tmp_path))
    try:
        assert run.stdout is not None
        group_id = run.stdout.readline().strip()
        read_until(run.stdout, "accepted")  # all 1,000 accepted, the first fifth done
        slurm.wait_for(lambda: started(tmp_path), "a task of the rest to run", BLOCK_TIMEOUT_S)
        blocks = block_ids(slurm)
        assert blocks
        d.kill()
    finally:
        run.kill()
        run.wait()
    # The engine child gets SIGTERM when the daemon dies and cancels its blocks.
    for job in blocks:
        assert slurm.wait_until_ended(job, BLOCK_TIMEOUT_S).state == "CANCELLED"
    assert block_ids(slurm) == set()
    (tmp_path / "go").touch()
    d.start(timeout=120)
    try:
        again = d.run_script(REATTACH, group_id)
        assert again.returncode == 0, again.stderr + d.log()
        results = [line.split() for line in again.stdout.splitlines()]
        assert sorted(int(x) for x, _ in results) == list(range(N))  # each once, any order
        assert not blocks & {job for x, job in results if int(x) >= N // 5}
    finally:
        d.stop()
    slurm.wait_for(lambda: not block_ids(slurm), "the restarted daemon's block to end", 60)


def test_status_polling_interval_reaches_the_provider_and_a_bad_one_is_refused_by_name() -> None:
    from parsl.providers import SlurmProvider

    from gateway.upstreams.cluster.engine_child import build_engine, problem

    def table(interval: object) -> dict[str, object]:
        provider = {"type": "SlurmProvider", "status_polling_interval": interval}
        return {"type": "GlobusComputeEngine", "address": "127.0.0.1", "provider": provider}

    assert SlurmProvider(partition="x").status_polling_interval == 60  # type: ignore[no-untyped-call]
    provider = build_engine(table(2)).executor.provider
    assert isinstance(provider, SlurmProvider) and provider.status_polling_interval == 2
    for bad in (0, "5", True):
        assert "provider.status_polling_interval must be an int >= 1" in problem(table(bad))


def test_sigkill_of_the_engine_child_mid_run_cancels_its_block_and_every_task_completes(
    tmp_path: Path,
    slurm: SlurmCluster,  # noqa: F811
) -> None:
    """The daemon lives on: the new child scancels the dead child's block, asks for a
    block of its own, and every accepted task runs once.

    The block's workers would wait 600 s for their dead interchange before leaving
    (COMPLETED): CANCELLED can only come from the new child's cancel by job id."""
    from tests.test_cluster import engine_child

    d = slurm_daemon(tmp_path / "state", slurm, threshold=600)
    d.start(timeout=120)
    run = d.popen_script(SUBMIT, str(tmp_path))
    try:
        assert run.stdout is not None
        before = read_until(run.stdout, "fifth")
        (first,) = {job for _, job in (line.split() for line in before[1:])}
        accepted = read_until(run.stdout, "accepted")
        slurm.wait_for(lambda: started(tmp_path), "a task of the rest to run", BLOCK_TIMEOUT_S)
        child = engine_child(d)
        os.kill(child, signal.SIGKILL)
        assert slurm.wait_until_ended(first, BLOCK_TIMEOUT_S).state == "CANCELLED"
        assert engine_child(d) != child
        (tmp_path / "go").touch()
        after = accepted + read_until(run.stdout, "all")
        assert run.wait(60) == 0, run.stderr.read() if run.stderr else ""
    finally:
        run.kill()
        run.wait()
        d.stop()
    assert "cancelled the blocks of a previous child: " + first in d.log()
    results = [line.split() for line in before[1:] + after]
    assert sorted(int(x) for x, _ in results) == list(range(N))  # each once
    assert first not in {job for x, job in results if int(x) >= N // 5}
    slurm.wait_for(lambda: not block_ids(slurm), "the daemon's blocks to end", 60)


MPI_CLUSTER = (
    """
[cluster.mpi]
engine = "GlobusMPIEngine"
mpi_launcher = "srun"
max_workers_per_block = 1
address = "127.0.0.1"
heartbeat_period = 1
heartbeat_threshold = 5
"""
    + SLURM_PROVIDER.replace("NAME", "mpi")
    + 'launcher = {{ type = "SimpleLauncher" }}\n'
)

MPI_RANKS = """
import json
from client import Executor, MPIFunction

# Quoted: each rank's own shell expands the variables, not the worker's.
ranks = MPIFunction("sh -c 'echo rank=$SLURM_PROCID of=$SLURM_NTASKS job=$SLURM_JOB_ID'")
with Executor(endpoint_id="mpi") as ex:
    ex.resource_specification = {"num_nodes": 1, "ranks_per_node": 2}
    two = ex.submit(ranks)
    ex.resource_specification = {"num_nodes": 1, "ranks_per_node": 1}
    one = ex.submit(ranks)
    ex.resource_specification = {}
    none = ex.submit(ranks)
    for f in (two, one):
        r = f.result(timeout=240)
        print(json.dumps({"returncode": r.returncode, "lines": sorted(r.stdout.splitlines())}))
    try:
        none.result(timeout=240)
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "text": str(exc)[-400:]}))
"""


def test_mpi_function_runs_ranks_under_srun_in_the_block_with_its_resource_specification(
    tmp_path: Path,
    slurm: SlurmCluster,  # noqa: F811
) -> None:
    """GlobusMPIEngine: resource_specification decides how many ranks srun starts, inside
    the block fxgate's provider asked for; without one the engine refuses the task.

    srun, not mpiexec: Parsl composes mpiexec's options in MPICH's dialect (-ppn,
    -hosts), which Debian's Open MPI refuses; srun is what a Slurm site uses."""
    import json

    state = tmp_path / "state"
    state.mkdir()
    (state / "config.toml").write_text(MPI_CLUSTER.format(partition=slurm.partition, root=ROOT))
    env = slurm.env()
    d = DaemonProcess(
        state, workers=1, extra_env={"SLURM_CONF": env["SLURM_CONF"], "PATH": env["PATH"]}
    )
    d.start(timeout=120)
    try:
        out = d.run_script(MPI_RANKS)
        assert out.returncode == 0, out.stderr + d.log()
        two, one, none = (json.loads(line) for line in out.stdout.splitlines())
        (block,) = block_ids(slurm)
        assert two == {
            "returncode": 0,
            "lines": [f"rank=0 of=2 job={block}", f"rank=1 of=2 job={block}"],
        }
        assert one == {"returncode": 0, "lines": [f"rank=0 of=1 job={block}"]}
        # As from a real endpoint: the engine's refusal comes back as the task's failure.
        assert none["error"] == "TaskExecutionFailed", none
        assert "MPI mode requires" in none["text"], none
    finally:
        assert d.stop() == 0
    slurm.wait_for(lambda: not block_ids(slurm), "the MPI block to end", 60)
