"""A cluster endpoint: Globus Compute's engine runs its tasks in a child the daemon supervises.

The daemon side of a [cluster.<name>] endpoint. The engine (Parsl's
HighThroughputExecutor and a Parsl provider: Slurm, PBS Pro, local
processes) runs in gateway/upstreams/cluster/engine_child.py, so the daemon
imports neither parsl nor dill; what comes back is the engine's packed
messagepack Result, decoded here as the Globus upstream decodes the ones its
broker delivers (globus/results.py decode), never unpickled.

Tasks wait in this upstream's queue, where they can still be cancelled, until
the engine has room: as many in the child as it has workers (plus the
engine's prefetch_capacity per manager) and queue_at_engine more, at least
one, so that its scaling strategy asks for a block while it has no workers.
The engine could not withdraw a task once it has it, as at an endpoint.

If the child dies, its tasks are offered again to the next child, started
after a backoff; the interchange it started dies with it (its process group),
and the next child cancels the blocks it had asked for. The child dies with
the daemon (PR_SET_PDEATHSIG, fired when the supervising thread ends) and then
shuts the engine down, which cancels its blocks.

Threads: `cluster-<name>` (supervise: starts and ends children, sends tasks)
and `cluster-<name>-read` (one per child: results and status). The queue,
the in-flight map, the status and the retry list are shared under `_cond`.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fxgate_contract.states import TaskState
from gateway.config import ClusterSettings
from gateway.store.records import Completion, PendingTask
from gateway.upstreams.base import PayloadBudget, UpstreamPorts, with_payloads
from gateway.upstreams.cluster.wire import WireError, encode, take
from gateway.upstreams.globus.results import decode

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 18
# Tasks one message to the child carries, at most.
MAX_BATCH = 500
# Between restarts of a child that keeps failing: doubling from the first to the last.
RESTART_MIN_S = 1.0
RESTART_MAX_S = 60.0
# A child that ran this long before it died is restarted after the shortest wait.
HEALTHY_S = 60.0
# What a child is given to shut its engine down (and cancel its blocks) after SIGTERM.
STOP_WAIT_S = 30.0
# The engine's own text for a task lost with its worker node (after its retries).
MANAGER_LOST = re.compile(r"^parsl\.executors\.high_throughput\.errors\.ManagerLost: ", re.M)
# The engine child's files (run dir, certificates, submit scripts) are its user's alone.
CHILD_UMASK = 0o077
# The child's environment: the daemon's, without its settings and credentials.
SECRET_PREFIXES = ("FXGATE_", "GLOBUS_")


# The child imports the very gateway package the daemon runs (not another one on its
# path): its parent directory goes first on sys.path, handed over as an argument, so
# nothing reaches PYTHONPATH, which the engine's workers would inherit.
CHILD_MAIN = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from gateway.upstreams.cluster.engine_child import entry; entry()"
)
PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])


def child_command(*args: str) -> list[str]:
    """The command line of an engine child (-P: its working directory adds nothing)."""
    return [sys.executable, "-P", "-c", CHILD_MAIN, PACKAGE_ROOT, *args]


def child_environment(env: dict[str, str]) -> dict[str, str]:
    """The daemon's environment without FXGATE_*/GLOBUS_*, this Python's bin first on PATH.

    The engine starts its interchange and workers as ``globus-compute-endpoint
    python-exec ...``: found on PATH, also in a batch job (sbatch passes it on).
    """
    clean = {k: v for k, v in env.items() if not k.startswith(SECRET_PREFIXES)}
    bin_dir = str(Path(sys.executable).parent)
    clean["PATH"] = os.pathsep.join([bin_dir, clean.get("PATH", os.defpath)])
    return clean


def check_engine(cluster: ClusterSettings) -> str:
    """What the engine library says is wrong with a cluster's engine config ("" if nothing).

    Runs the engine child with --check: only it may import the engine.
    """
    out = subprocess.run(
        child_command("--check"),
        input=json.dumps(cluster.engine),
        capture_output=True,
        text=True,
        env=child_environment(dict(os.environ)),
        timeout=120,
        umask=CHILD_UMASK,
    )
    if out.returncode == 0:
        return ""
    return out.stdout.strip() or out.stderr.strip()[-2000:] or f"exit code {out.returncode}"


def lost_worker(c: Completion) -> Completion:
    """A task the engine failed with ManagerLost (its node or block is gone) as WorkerLost,
    the code fxgate's local pool gives a lost worker; the engine's text is kept."""
    if c.error_code == "RemoteExecutionError" and MANAGER_LOST.search(c.data):
        return dataclasses.replace(
            c,
            error_code="WorkerLost",
            error_message="the worker running this task was lost (ManagerLost: its node or "
            "block ended) and no retry was left (max_retries_on_system_failure)",
        )
    return c


def completion(task_id: str, body: bytes, sent: PendingTask | None = None) -> Completion:
    """A finished task from the packed Result the engine returned, never unpickled.

    `sent`: the task as it was handed to the engine; its group and state let the
    store finish it without looking it up."""
    found, problem = decode(body, None)
    if found is None:
        message = f"the engine returned an unusable result: {problem}"
        return Completion(
            TaskState.FAILED,
            message,
            task_id=task_id,
            error_code="BadResult",
            error_message=message,
        )
    found = dataclasses.replace(found, task_id=task_id, upstream_task_id=None)
    if sent is not None:
        found = dataclasses.replace(found, group_id=sent.group_id, was=sent.state)
    return lost_worker(found)


@dataclass(eq=False)
class _Child:
    """One engine child; its process and socket belong to the supervising thread, the
    flags below are set by its reader thread under the upstream's _cond."""

    process: subprocess.Popen[bytes]
    sock: socket.socket
    started: float
    reader: threading.Thread | None = None
    ready: bool = False
    dead: bool = False
    failure: str = ""
    known_functions: set[str] = field(default_factory=set)


class ClusterUpstream:
    """Runs tasks on one cluster endpoint through its engine child."""

    def __init__(self, cluster: ClusterSettings, state_dir: Path) -> None:
        self.name = cluster.name
        self.endpoint_id = cluster.endpoint_id  # set by Gateway.start when not configured
        self.engine_config = cluster.engine
        self._ahead = cluster.queue_at_engine
        self._run_dir = state_dir / "clusters" / cluster.name
        self._cond = threading.Condition()
        self._queue: deque[PendingTask] = deque()
        self._queued: set[str] = set()
        self._inflight: dict[str, PendingTask] = {}
        self._budget = PayloadBudget()
        self._status: dict[str, Any] = {}
        self._state = "not started"
        self._unstored: list[Completion] = []
        self._orphans: list[str] = []  # block job ids of a child that died
        self._running = False
        self._ports: UpstreamPorts | None = None
        self._thread = threading.Thread(target=self._supervise, name=f"cluster-{self.name}")
        self._codes: dict[str, str] = {}  # function code by id; supervising thread only

    # ----------------------------------------------------------- contract
    def start(self, ports: UpstreamPorts) -> None:
        self._ports = ports
        self._running = True
        self._thread.start()

    def enqueue(self, tasks: Sequence[PendingTask]) -> None:
        with self._cond:
            for t in tasks:
                if t.task_id not in self._queued and t.task_id not in self._inflight:
                    self._queue.append(self._budget.admit(t))
                    self._queued.add(t.task_id)
            self._cond.notify_all()

    def cancel(self, task_ids: Sequence[str]) -> set[str]:
        with self._cond:
            gone = {t for t in task_ids if t in self._queued}
            if gone:
                self._queued -= gone
                for t in self._queue:
                    if t.task_id in gone:
                        self._budget.release(t)
                self._queue = deque(t for t in self._queue if t.task_id not in gone)
        return gone

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=STOP_WAIT_S + 10)

    def describe(self) -> str:
        with self._cond:
            s, state = self._status, self._state
            queued, at_engine = len(self._queue), len(self._inflight)
        head = f"endpoint {self.endpoint_id}: {state}"
        if not s:
            return f"{head}; {at_engine} tasks at the engine, {queued} queued in fxgate"
        blocks = ", ".join(f"{n} {k.lower()}" for k, n in sorted(s["blocks"].items())) or "none"
        return (
            f"{head} ({s['engine']}, {s['provider']}); blocks: {blocks}; "
            f"{s['workers']} workers ({s['idle_workers']} idle) on {s['managers']} nodes; "
            f"{at_engine} tasks at the engine ({self._waiting(s, at_engine)} waiting for a "
            f"worker), {queued} queued in fxgate"
        )

    def load(self) -> dict[str, int]:
        """Workers and tasks in the fields of the web service's endpoint status details."""
        with self._cond:
            s, queued, at_engine = self._status, len(self._queue), len(self._inflight)
        return {
            "total_workers": int(s.get("workers", 0)),
            "idle_workers": int(s.get("idle_workers", 0)),
            "pending_tasks": queued + self._waiting(s, at_engine),
            "outstanding_tasks": queued + at_engine,
            "managers": int(s.get("managers", 0)),
        }

    @staticmethod
    def _waiting(status: dict[str, Any], at_engine: int) -> int:
        """Tasks at the engine that no worker runs: the daemon's exact count of tasks handed
        over, less the workers busy at the engine's last report (at most a second old)."""
        busy = int(status.get("workers", 0)) - int(status.get("idle_workers", 0))
        return max(0, at_engine - busy)

    # ---------------------------------------------------------- supervise
    def _supervise(self) -> None:
        """Run children one after another until stop (the supervising thread)."""
        wait = RESTART_MIN_S
        while self._running:
            child = self._spawn()
            try:
                self._serve(child)
            finally:
                reason = self._end(child)
            if not self._running:
                break
            if time.monotonic() - child.started > HEALTHY_S:
                wait = RESTART_MIN_S
            log.warning("cluster %s: engine child %s; restart in %.0f s", self.name, reason, wait)
            with self._cond:
                self._state = f"engine child {reason}; restarting"
                self._cond.wait_for(lambda: not self._running, wait)
            wait = min(wait * 2, RESTART_MAX_S)
        with self._cond:
            self._state = "stopped"

    def _spawn(self) -> _Child:
        """Start a child (own process group: its interchange dies with it) and describe
        the engine to it; only on the supervising thread, whose end sends it SIGTERM."""
        self._run_dir.mkdir(parents=True, exist_ok=True)
        ours, theirs = socket.socketpair()
        with theirs:
            proc = subprocess.Popen(
                child_command(str(os.getpid()), str(theirs.fileno())),
                env=child_environment(dict(os.environ)),
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                cwd=self._run_dir,
                start_new_session=True,
                # Its own umask, not whatever the daemon's is at this instant: the server
                # narrows the process's umask while it binds its sockets, and a child
                # spawned then made the engine's certificates directory 0600, which the
                # engine refuses ("must be private"), at every restart after.
                umask=CHILD_UMASK,
            )
        child = _Child(proc, ours, time.monotonic())
        with self._cond:
            orphans, self._orphans = self._orphans, []
            self._state = "engine starting"
        start = {
            "t": "start",
            "engine": self.engine_config,
            "endpoint_id": self.endpoint_id,
            "run_dir": str(self._run_dir),
            "orphans": orphans,
        }
        try:
            ours.sendall(encode(start))
        except OSError:
            pass  # it died at once: its reader reports it
        child.reader = threading.Thread(
            target=self._read, args=(child,), name=f"cluster-{self.name}-read"
        )
        child.reader.start()
        return child

    def _serve(self, child: _Child) -> None:
        """Send tasks as the engine has room, and retry results the store refused."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._has_work(child), timeout=1.0)
                if not self._running or child.dead:
                    return
                retry, self._unstored = self._unstored, []
                batch = self._take(child) if child.ready else []
            if retry:
                self._deliver(retry)
            if batch and not self._send(child, batch):
                return

    def _has_work(self, child: _Child) -> bool:
        """Under _cond: something for the supervising thread to do."""
        if not self._running or child.dead or self._unstored:
            return True
        return child.ready and bool(self._queue) and self._low()

    def _low(self) -> bool:
        """Under _cond: the engine holds half its room or less, so a batch is worth sending
        (refilling it one task per result cost the daemon ~1 ms a task in wakeups)."""
        return len(self._inflight) <= self._capacity() // 2

    def _capacity(self) -> int:
        """Under _cond: tasks the engine may hold: what its workers take, queue_at_engine
        more, and at least one (while it has no workers, so that it asks for a block)."""
        return max(1, int(self._status.get("capacity", 0)) + self._ahead)

    def _take(self, child: _Child) -> list[PendingTask]:
        """Under _cond: the tasks the engine has room for, moved from the queue to in flight."""
        room = min(MAX_BATCH, self._capacity() - len(self._inflight))
        batch: list[PendingTask] = []
        while self._queue and len(batch) < room:
            t = self._queue.popleft()
            self._queued.discard(t.task_id)
            self._budget.release(t)
            self._inflight[t.task_id] = t
            batch.append(t)
        return batch

    def _send(self, child: _Child, batch: list[PendingTask]) -> bool:
        """Send a batch with its payloads (and code the child lacks); False if the child is gone."""
        assert self._ports is not None
        try:
            ready = with_payloads(batch, self._ports.payloads)
        except Exception as exc:  # noqa: BLE001 - the store is down: offer them again later
            log.warning("cluster %s: cannot read %d payloads: %s", self.name, len(batch), exc)
            with self._cond:
                self._requeue([t for t in batch if self._inflight.pop(t.task_id, None)])
            return True
        sent = {t.task_id for t, _ in ready}
        with self._cond:  # finished (or released) since they were queued: not sent
            for t in batch:
                if t.task_id not in sent:
                    self._inflight.pop(t.task_id, None)
        rows = []
        for t, payload in ready:
            code = ""
            if t.function_id not in child.known_functions:
                code = self._code(t.function_id)
                child.known_functions.add(t.function_id)
            spec = t.options.resource_specification
            rows.append([t.task_id, t.function_id, code, payload, spec, list(t.result_serializers)])
        if not rows:
            return True
        try:
            child.sock.sendall(encode({"t": "tasks", "tasks": rows}))
        except OSError:
            return False  # its tasks are offered again when it is replaced
        return True

    def _code(self, function_id: str) -> str:
        code = self._codes.get(function_id)
        if code is None:
            assert self._ports is not None
            try:
                code = self._ports.functions(function_id).code
            except KeyError:
                code = ""  # the child fails the task: unknown function
            self._codes[function_id] = code
        return code

    def _requeue(self, tasks: Sequence[PendingTask]) -> None:
        """Under _cond: tasks back at the head of the queue, in their order."""
        for t in reversed(tasks):
            if t.task_id not in self._queued:
                self._queue.appendleft(self._budget.admit(t))
                self._queued.add(t.task_id)

    def _end(self, child: _Child) -> str:
        """Stop a child (SIGTERM: it shuts its engine down), offer its unfinished tasks again."""
        proc = child.process
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        try:  # what it started without a session of its own (the interchange) goes with it
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if child.reader is not None:
            child.reader.join(timeout=10)
        child.sock.close()
        with self._cond:
            unfinished = list(self._inflight.values())
            self._inflight.clear()
            self._requeue(unfinished)
            if self._running and child.ready:  # died under us: its blocks are orphans
                self._orphans = list(self._status.get("jobs", []))
            self._status = {}
        if unfinished:
            log.info("cluster %s: %d unfinished tasks offered again", self.name, len(unfinished))
        return child.failure or _exit_reason(proc.returncode)

    # -------------------------------------------------------------- read
    def _read(self, child: _Child) -> None:
        """Take results and status from one child until it closes (its reader thread)."""
        buf = bytearray()
        try:
            while chunk := child.sock.recv(READ_CHUNK):
                buf += chunk
                done: list[Completion] = []
                for message in take(buf):
                    done.extend(self._message(child, message))
                if done:
                    self._deliver(done)
        except (OSError, WireError, ValueError, KeyError, TypeError) as exc:
            log.error("cluster %s: engine child broke the protocol: %r", self.name, exc)
        finally:
            with self._cond:
                child.dead = True
                self._cond.notify_all()

    def _message(self, child: _Child, message: dict[str, Any]) -> list[Completion]:
        kind = message["t"]
        if kind == "results":
            results = message["results"]
            with self._cond:
                sent = [self._inflight.pop(tid, None) for tid, _ in results]
                if self._queue and self._low():
                    self._cond.notify_all()
            return [
                completion(tid, base64.b64decode(body), t)
                for (tid, body), t in zip(results, sent, strict=True)
            ]
        with self._cond:
            if kind == "status":
                self._status = message
            elif kind == "ready":
                child.ready = True
                self._state = f"engine running (pid {child.process.pid})"
            elif kind == "failed":
                child.failure = f"could not start the engine: {message['error']}"
                self._state = child.failure
            self._cond.notify_all()
        return []

    def _deliver(self, done: list[Completion]) -> None:
        assert self._ports is not None
        # _stored runs on the store-writer thread once the results are committed.
        self._ports.sink(done).add_done_callback(functools.partial(self._stored, done))

    def _stored(self, done: list[Completion], fut: Future[list[Completion]]) -> None:
        """Results the store could not take are offered again (writer thread)."""
        if fut.exception() is not None:
            with self._cond:
                self._unstored.extend(done)
                self._cond.notify_all()


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
