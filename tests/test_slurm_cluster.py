"""The private Slurm cluster works, and the engine real endpoints run drives real blocks on it.

Cluster endpoints rest on two things this checks on real parts: the test
session's own Slurm cluster (srun, sbatch, squeue, the job-completion log),
and globus-compute-endpoint's GlobusComputeEngine with Parsl's SlurmProvider
running tasks in a Slurm job it asked for, driven directly as an endpoint
drives it: results come back from inside that job, the job is gone from the
queue after shutdown, and a task whose block is cancelled under it runs again
on a new block when retries are on.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.engine_direct import (
    TaskFailed,
    block_job_ids,
    engine_env,
    result_of,
    running_engine,
    slurm_provider,
    submit,
)
from tests.support.fixtures import slurm  # noqa: F401
from tests.support.slurm import SlurmCluster

pytestmark = pytest.mark.cluster

# Generous: a block starts in ~5-10 s on an idle machine, several times that on a busy one.
RESULT_TIMEOUT_S = 240


def square_where(x: int) -> tuple[int, str | None, str]:
    """x squared, the Slurm job it ran in and the host, from inside a worker."""
    import os
    import socket

    return x * x, os.environ.get("SLURM_JOB_ID"), socket.gethostname()


def fail(message: str) -> None:
    raise ValueError(message)


def block_on_first_run(attempts_dir: str) -> str:
    """Records the Slurm job of each run; the first run waits for its block to be cancelled."""
    import os
    import pathlib
    import time

    attempts = pathlib.Path(attempts_dir)
    first = not any(attempts.iterdir())
    job = os.environ["SLURM_JOB_ID"]
    (attempts / job).touch()
    if first:
        time.sleep(600)
    return job


def test_srun_runs_on_the_private_node(slurm: SlurmCluster) -> None:  # noqa: F811
    assert slurm.run("srun", "hostname").strip() == socket.gethostname()


def test_sbatch_job_is_queued_then_completed_in_the_jobcomp_log(
    slurm: SlurmCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    go = tmp_path / "go"
    script = f"while [ ! -e {go} ]; do sleep 0.1; done; echo done"
    job = slurm.sbatch("--job-name=fxtest-wait", f"--output={tmp_path}/out", "--wrap", script)
    assert job in slurm.queued_ids()  # it cannot end before `go` exists
    assert slurm.finished(job) is None
    go.touch()
    record = slurm.wait_until_ended(job)
    assert (record.name, record.state, record.exit_code) == ("fxtest-wait", "COMPLETED", "0:0")
    assert (tmp_path / "out").read_text() == "done\n"


def test_failed_job_is_recorded_with_its_exit_code(slurm: SlurmCluster) -> None:  # noqa: F811
    job = slurm.sbatch("--output=/dev/null", "--wrap", "exit 3")
    record = slurm.wait_until_ended(job)
    assert (record.state, record.exit_code) == ("FAILED", "3:0")


def test_engine_runs_tasks_in_a_slurm_block_and_cancels_it_on_shutdown(
    slurm: SlurmCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    with running_engine(
        lambda: slurm_provider(slurm),
        tmp_path,
        env=engine_env(slurm.env()),
        job_status_kwargs={"strategy_period": 1},
    ) as engine:
        futures = [submit(engine, square_where, i) for i in range(20)]
        failing = submit(engine, fail, "on purpose")
        results = [result_of(f, RESULT_TIMEOUT_S) for f in futures]
        with pytest.raises(TaskFailed, match="ValueError: on purpose"):
            result_of(failing, RESULT_TIMEOUT_S)
        (block,) = block_job_ids(engine)
        assert results == [(i * i, block, socket.gethostname()) for i in range(20)]
        running = {job.job_id: job for job in slurm.squeue_jobs()}
        assert running[block].state == "RUNNING"
        assert running[block].name.startswith("parsl.")
    assert slurm.wait_until_ended(block).state == "CANCELLED"


def test_task_runs_again_on_a_new_block_when_its_block_is_cancelled(
    slurm: SlurmCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    with running_engine(
        lambda: slurm_provider(slurm),
        tmp_path / "run",
        env=engine_env(slurm.env()),
        max_retries_on_system_failure=1,
        heartbeat_threshold=10,
        heartbeat_period=1,
        job_status_kwargs={"strategy_period": 1},
    ) as engine:
        future = submit(engine, block_on_first_run, str(attempts))
        slurm.wait_for(lambda: any(attempts.iterdir()), "the task's first run", RESULT_TIMEOUT_S)
        (first_block,) = (p.name for p in attempts.iterdir())
        assert first_block in block_job_ids(engine)
        slurm.scancel(first_block)
        second_block = result_of(future, RESULT_TIMEOUT_S)
        assert second_block != first_block
        assert sorted(p.name for p in attempts.iterdir()) == sorted([first_block, second_block])
        assert second_block in block_job_ids(engine)
    assert slurm.wait_until_ended(first_block).state == "CANCELLED"
    assert slurm.wait_until_ended(second_block).state == "CANCELLED"
