"""A private one-node Slurm cluster for a test session: Debian's slurm-wlm and munge in a temp dir.

Cluster endpoints hand tasks to a Slurm block through the engine that Globus
Compute endpoints run; that path is tested on a real scheduler, not a mock.
Everything here lives in one temporary directory reached through SLURM_CONF:
its own munge key and socket, two free ports, state, spool, logs and the
job-completion log (jobcomp/filetxt; sacct would need slurmdbd and MariaDB).
munged, slurmctld and slurmd run as plain child processes of the test
session (no system service is touched), so two clusters can run side by
side. The node is this machine under `hostname -s`, sized from `slurmd -C`.
Readiness is `sinfo` showing the node idle, polled with a timeout: nothing
else can be awaited from outside the scheduler.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.rabbitmq import free_ports

PROGRAMS = ("munged", "slurmctld", "slurmd", "sinfo", "squeue", "sbatch", "srun", "scancel")
_SBIN_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"
_JOBCOMP_FIELD = re.compile(r"(\w+)=(.*?)(?= \w+=|$)")
# Completed jobs leave squeue at once; KillWait is the grace between SIGTERM and SIGKILL on scancel.
_KILL_WAIT_S = 5


class SlurmUnavailable(RuntimeError):
    """Slurm or munge is missing, or the private cluster could not start; says which and why."""


@dataclass(frozen=True)
class QueuedJob:
    """One line of squeue: a job the controller still holds (pending, running, completing)."""

    job_id: str
    name: str
    state: str  # squeue's long form: PENDING, RUNNING, COMPLETING, ...


@dataclass(frozen=True)
class FinishedJob:
    """One record of the job-completion log: a job that ended, how, and its exit code."""

    job_id: str
    name: str
    state: str  # COMPLETED, CANCELLED, FAILED, TIMEOUT, NODE_FAIL, ...
    exit_code: str  # "status:signal", e.g. "0:0"


def find_programs() -> dict[str, str]:
    """Paths of the Slurm and munge programs the cluster needs; SlurmUnavailable names the missing.

    The daemons live in /usr/sbin, which a non-login PATH may lack, so it is searched too.
    """
    search = os.environ.get("PATH", "") + ":" + _SBIN_PATH
    found = {name: shutil.which(name, path=search) for name in PROGRAMS}
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        raise SlurmUnavailable(
            f"{', '.join(missing)} not found: install Debian's slurm-wlm and munge "
            "(`apt-get install -y slurm-wlm munge`; scripts/test does)"
        )
    return {name: str(path) for name, path in found.items()}


def short_hostname() -> str:
    """`hostname -s`: slurmd only serves the NodeName that matches it."""
    return socket.gethostname().split(".")[0]


def node_hardware(slurmd: str) -> dict[str, int]:
    """The node's CPUs, sockets, cores, threads and memory as `slurmd -C` reports them.

    A node declared bigger than it is gets drained, so slurm.conf copies these
    and declares half the memory.
    """
    out = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=30, check=False)
    fields = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out.stdout)}
    if out.returncode != 0 or "CPUs" not in fields:
        raise SlurmUnavailable(f"`slurmd -C` failed ({out.returncode}): {out.stdout}{out.stderr}")
    return {
        "CPUs": fields["CPUs"],
        "Sockets": fields.get("SocketsPerBoard", 1),
        "CoresPerSocket": fields.get("CoresPerSocket", fields["CPUs"]),
        "ThreadsPerCore": fields.get("ThreadsPerCore", 1),
        "RealMemory": max(100, fields.get("RealMemory", 2000) // 2),
    }


class SlurmCluster:
    """munged + slurmctld + slurmd in a temporary directory; one partition `debug`, one node.

    Attributes: `root` (the directory), `conf` (slurm.conf), `node` (the node
    name), `partition`, `jobcomp_log`, `last_start_seconds`. Processes run as
    the current user, who must be root (SlurmUser and SlurmdUser are root).
    """

    partition = "debug"

    def __init__(self, *, start_timeout: float = 60.0) -> None:
        self.programs = find_programs()
        if os.geteuid() != 0:
            raise SlurmUnavailable("slurmd must run as root to launch jobs; tests are not root")
        self.root = Path(tempfile.mkdtemp(prefix="fxtest-slurm-"))
        self.conf = self.root / "slurm.conf"
        self.jobcomp_log = self.root / "jobcomp.log"
        self.node = short_hostname()
        self.ctld_port, self.slurmd_port = free_ports(2)
        self.start_timeout = start_timeout
        self.last_start_seconds: float | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # ------------------------------------------------------------ environment

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.sock"

    def env(self) -> dict[str, str]:
        """Environment for Slurm commands and whatever they launch.

        SLURM_CONF points every command at this cluster; the running Python's
        bin directory leads PATH, because sbatch passes the environment on and
        a block's `globus-compute-endpoint python-exec` must be found there.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        path = [str(Path(sys.executable).parent), env.get("PATH", ""), _SBIN_PATH]
        env.update(SLURM_CONF=str(self.conf), PATH=":".join(p for p in path if p))
        return env

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start munged, slurmctld and slurmd; return once the node is idle in `sinfo`.

        On any failure everything started is stopped and SlurmUnavailable
        carries the reason and the tail of each log.
        """
        began = time.monotonic()
        try:
            self._write_munge_key()
            self._spawn("munged", self._munged_argv())
            self._wait_for(self.munge_socket.exists, "munged to open its socket")
            self.conf.write_text(self._slurm_conf())
            self._spawn("slurmctld", [self.programs["slurmctld"], "-D", "-f", str(self.conf)])
            self._spawn("slurmd", [self.programs["slurmd"], "-D", "-f", str(self.conf)])
            self._wait_for(self.node_is_idle, f"node {self.node} to be idle in sinfo")
        except (SlurmUnavailable, OSError, subprocess.SubprocessError) as exc:
            logs = self.logs()
            self._terminate_all()
            raise SlurmUnavailable(f"private Slurm cluster did not start: {exc}\n{logs}") from None
        self.last_start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Cancel every job, wait until the controller holds none, stop the daemons, delete the dir.

        Jobs go first: slurmstepd outlives slurmd, so a job left running
        would keep its processes after the cluster is gone.
        """
        if self._running("slurmctld"):
            try:
                self.cancel_all()
                self._wait_for(lambda: not self.squeue_jobs(), "every job to leave squeue", 30)
            except (SlurmUnavailable, subprocess.SubprocessError) as exc:
                print(f"slurm stop: {exc}", file=sys.stderr)
        self._terminate_all()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --------------------------------------------------------------- queries

    def run(self, *argv: str, timeout: float = 30) -> str:
        """Run a Slurm command against this cluster; its stdout, or SlurmUnavailable on failure."""
        program = self.programs.get(argv[0], argv[0])
        out = subprocess.run(
            [program, *argv[1:]],
            env=self.env(),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if out.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr}")
        return out.stdout

    def node_is_idle(self) -> bool:
        """Whether sinfo shows this cluster's node idle (it accepts a job at once)."""
        try:
            out = self.run("sinfo", "--noheader", "--Node", "--format=%N %T", timeout=10)
        except (SlurmUnavailable, subprocess.TimeoutExpired):
            return False
        return f"{self.node} idle" in out.splitlines()

    def squeue_jobs(self) -> list[QueuedJob]:
        """Jobs the controller still holds: pending, running or completing."""
        out = self.run("squeue", "--noheader", "--format=%i|%T|%j")
        jobs = []
        for line in out.splitlines():
            job_id, state, name = line.strip().split("|", 2)
            jobs.append(QueuedJob(job_id=job_id, name=name, state=state))
        return jobs

    def jobcomp_records(self) -> list[FinishedJob]:
        """Every finished job, from the jobcomp/filetxt log (one `Key=Value ...` line a job)."""
        if not self.jobcomp_log.exists():
            return []
        records = []
        for line in self.jobcomp_log.read_text(errors="replace").splitlines():
            fields = {k: v.strip() for k, v in _JOBCOMP_FIELD.findall(line)}
            if "JobId" in fields:
                records.append(
                    FinishedJob(
                        job_id=fields["JobId"],
                        name=fields.get("Name", ""),
                        state=fields.get("JobState", ""),
                        exit_code=fields.get("ExitCode", ""),
                    )
                )
        return records

    def finished(self, job_id: str) -> FinishedJob | None:
        """The completion record of one job, or None while it has none."""
        return next((r for r in self.jobcomp_records() if r.job_id == job_id), None)

    def wait_until_ended(self, job_id: str, timeout: float = 60) -> FinishedJob:
        """Wait until a job has its completion record and has left squeue; that record.

        The record is written while the job is still COMPLETING in squeue.
        """

        def ended() -> bool:
            return self.finished(job_id) is not None and job_id not in self.queued_ids()

        self._wait_for(ended, f"job {job_id} to end and leave squeue", timeout)
        record = self.finished(job_id)
        assert record is not None
        return record

    def queued_ids(self) -> set[str]:
        """Ids of the jobs squeue lists."""
        return {job.job_id for job in self.squeue_jobs()}

    def sbatch(self, *argv: str) -> str:
        """Submit a batch job (`sbatch ARGS`); its job id."""
        out = self.run("sbatch", "--parsable", *argv)
        return out.strip().split(";")[0]

    def scancel(self, job_id: str) -> None:
        """Cancel one job, as an operator or the scheduler would."""
        self.run("scancel", job_id)

    def cancel_all(self) -> None:
        """Cancel every job the controller holds."""
        ids = [job.job_id for job in self.squeue_jobs()]
        if ids:
            self.run("scancel", *ids)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Poll `condition` (state outside this process) until true; SlurmUnavailable on timeout."""
        self._wait_for(condition, what, timeout)

    def logs(self, max_chars: int = 3000) -> str:
        """Tail of each daemon's log and console output, for failure messages."""
        parts = []
        for path in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.out")):
            if path != self.jobcomp_log and path.exists():
                text = path.read_text(errors="replace")[-max_chars:]
                parts.append(f"--- {path.name} ---\n{text}")
        return "\n".join(parts) or "(no logs)"

    # ---------------------------------------------------------------- helpers

    def _write_munge_key(self) -> None:
        munge = self.root / "munge"
        munge.mkdir()
        key = munge / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        # munged refuses a socket directory that is not searchable by all.
        self.root.chmod(0o755)
        munge.chmod(0o755)

    def _munged_argv(self) -> list[str]:
        munge = self.root / "munge"
        return [
            self.programs["munged"],
            "-F",
            f"--key-file={munge / 'munge.key'}",
            f"--socket={self.munge_socket}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={self.root / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        ]

    def _slurm_conf(self) -> str:
        d = self.root
        hw = node_hardware(self.programs["slurmd"])
        node_hw = " ".join(f"{k}={v}" for k, v in hw.items())
        return f"""\
ClusterName=fxtest{secrets.token_hex(3)}
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp_log}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
KillWait={_KILL_WAIT_S}
NodeName={self.node} NodeAddr=127.0.0.1 {node_hw} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.root / f"{name}.out", "ab") as out:
            self._procs[name] = subprocess.Popen(
                argv,
                env=self.env(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _running(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def _wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 0) -> None:
        deadline = time.monotonic() + (timeout or self.start_timeout)
        while not condition():
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise SlurmUnavailable(f"{name} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise SlurmUnavailable(f"timed out waiting for {what}")
            time.sleep(0.1)

    def _terminate_all(self) -> None:
        """SIGTERM the daemons we started, newest first; SIGKILL any still up after 15 s."""
        for name in reversed(list(self._procs)):
            proc = self._procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(list(self._procs.values())):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        self._procs.clear()

    def __repr__(self) -> str:
        return f"SlurmCluster({self.root}, node={self.node}, ctld port={self.ctld_port})"
