"""The engine child: runs Globus Compute's engine for one cluster endpoint of the daemon.

The daemon never imports parsl or globus_compute_endpoint (nor dill): this
process does, started by gateway/upstreams/cluster/upstream.py (child_command) with
arguments DAEMON_PID FD. It builds
the engine from the endpoint's config exactly as a Globus Compute endpoint
builds it from config.yaml (the endpoint's own EngineDispatcher), starts it,
and hands it tasks in the form an endpoint hands them: a messagepack Task whose
task_buffer is the function code and the payload (three packed buffers). What
the engine returns, a packed messagepack Result, goes back to the daemon byte
for byte (base64 in JSON, gateway/upstreams/cluster/wire.py).

It dies with the daemon: PR_SET_PDEATHSIG sends it SIGTERM when the daemon's
supervising thread ends, and on SIGTERM (or end of input) it shuts the engine
down, which cancels the engine's blocks: nothing stays queued on the cluster
for a daemon that is gone.

``--check`` builds the engine without starting it (config on stdin, JSON) and
prints what is wrong, naming the key, for the daemon to refuse to start.
"""

from __future__ import annotations

import base64
import ctypes
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from gateway.upstreams.cluster.wire import encode, take

log = logging.getLogger("fxgate.engine_child")

PR_SET_PDEATHSIG = 1  # linux/prctl.h
STATUS_EVERY_S = 1.0
READ_CHUNK = 1 << 18
# While results stream in (the engine holds more tasks than it has workers), each
# message to the daemon waits up to this long for more: the daemon commits and
# fans out once per message, ~1.5 ms of its CPU, which with one result a message
# cost a third of the engine's own work per task. A result with no others coming
# is sent at once.
GATHER_S = 0.02
MAX_RESULTS_PER_MESSAGE = 500


class Stop(Exception):
    """SIGTERM: shut the engine down and leave."""


def build_engine(config: dict[str, Any]) -> Any:
    """The engine a Globus Compute endpoint would build from the same `engine:` table.

    One provider key is fxgate's own: `status_polling_interval` (seconds), how often
    the engine asks the scheduler for its blocks' states. Parsl's providers fix it
    (SlurmProvider and PBSProProvider: 60 s), so a cancelled or expired block is
    noticed and replaced up to a minute late; a site may ask for less.
    """
    from globus_compute_endpoint.endpoint.config.dispatch import EngineDispatcher

    provider = config.get("provider")
    interval = None
    if isinstance(provider, dict) and "status_polling_interval" in provider:
        provider = dict(provider)
        interval = provider.pop("status_polling_interval")
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise ValueError("provider.status_polling_interval must be an int >= 1 (seconds)")
        config = {**config, "provider": provider}
    engine = EngineDispatcher.build_instance(config)
    if interval is not None:
        poll_every(engine.executor.provider, interval)
    return engine


def poll_every(provider: Any, seconds: int) -> None:
    """Make this provider report `seconds` as its status polling interval.

    The providers declare it as a read-only property, read by the executor at each
    poll; the instance gets a subclass that overrides only that property.
    """
    cls = type(provider)
    body = {"status_polling_interval": property(lambda _: seconds), "__module__": cls.__module__}
    quick = type(cls.__name__, (cls,), body)
    provider.__class__ = quick


def problem(config: dict[str, Any]) -> str:
    """What is wrong with an engine config ("" if nothing), in the library's words."""
    try:
        import globus_compute_endpoint  # noqa: F401
        import parsl  # noqa: F401
    except ImportError as exc:
        return (
            f"cluster endpoints need globus-compute-endpoint and parsl "
            f"(pip install 'fxgate[cluster]'): {exc}"
        )
    try:
        engine = build_engine(config)
    except Exception as exc:  # noqa: BLE001 - reported to the daemon, which refuses to start
        return " ".join(str(exc).split())[:2000] or type(exc).__name__
    # Building starts nothing but the engine's own helpers; none may outlive the check.
    del engine
    return ""


def status(engine: Any) -> dict[str, Any]:
    """What the engine can say cheaply: blocks by state, workers (idle), room for tasks.

    (How many tasks it holds the daemon counts itself, exactly.)"""
    executor = engine.executor
    managers = engine.get_connected_managers()
    blocks: dict[str, int] = {}
    jobs: list[str] = []
    for block_id, job in list(executor.status_facade.items()):
        blocks[job.state.name] = blocks.get(job.state.name, 0) + 1
        if not job.terminal and block_id in executor.blocks_to_job_id:
            jobs.append(str(executor.blocks_to_job_id[block_id]))
    workers = sum(int(m["worker_count"]) for m in managers)
    prefetch = int(executor.prefetch_capacity or 0)
    return {
        "t": "status",
        "blocks": blocks,
        "managers": len(managers),
        "workers": workers,
        "idle_workers": sum(max(0, int(m["worker_count"]) - int(m["tasks"])) for m in managers),
        # Tasks the engine can take now without a queue of its own: fxgate keeps the
        # rest, so that they can still be cancelled (HTEX cannot withdraw a task).
        "capacity": workers + prefetch * len(managers),
        "jobs": jobs,  # the scheduler's ids of blocks not ended (cancelled if this child dies)
        "engine": type(engine).__name__,
        "provider": type(executor.provider).__name__,
    }


def cancel_orphans(engine: Any, job_ids: Sequence[str]) -> None:
    """Cancel the blocks a previous child asked for and could not cancel (it was killed).

    The provider cancels by scheduler job id (scancel, qdel; LocalProvider: the
    pid). Providers keep a record of each job they submitted and update it on
    cancel, so the old ids are recorded for the call and forgotten after it: this
    child's status polls must not count them as its own.
    """
    if not job_ids:
        return
    provider = engine.executor.provider
    told = [job for job in job_ids if job not in provider.resources]
    for job in told:
        provider.resources[job] = {"job_id": job, "status": None, "remote_pid": _pid(job)}
    try:
        provider.cancel(list(job_ids))
    except Exception as exc:  # noqa: BLE001 - left to their walltime or heartbeat
        log.warning("could not cancel the blocks of a previous child %s: %r", job_ids, exc)
    else:
        log.warning("cancelled the blocks of a previous child: %s", " ".join(job_ids))
    finally:
        for job in told:
            provider.resources.pop(job, None)


def _pid(job: str) -> int | None:
    return int(job) if job.isdigit() else None


class Child:
    """One engine and the daemon's socket.

    The main thread reads tasks and submits them; the engine's threads (its
    futures' callbacks) send results, gathered while a send is under way, or,
    while results stream in, leave them to the `gather` thread, which sends
    what came within GATHER_S in one message; the status thread sends status;
    writes share `_send_lock`.
    """

    def __init__(self, sock: socket.socket, engine: Any) -> None:
        self.sock = sock
        self.engine = engine
        self._send_lock = threading.Lock()
        self._codes: dict[str, str] = {}
        self._done = threading.Event()
        # Under _results: finished and not yet sent; whether a thread is in _send_results;
        # tasks the engine holds (submitted, not finished); its workers at the last status.
        self._results_ready: list[list[str]] = []
        self._results = threading.Condition()
        self._sending = False
        self._held = 0
        self._workers = 0

    def send(self, message: Any) -> None:
        data = encode(message)
        with self._send_lock:
            self.sock.sendall(data)

    def submit(self, tasks: Sequence[list[Any]]) -> None:
        """Hand tasks to the engine as an endpoint does (its interchange's submit call)."""
        from globus_compute_common import messagepack
        from globus_compute_common.messagepack.message_types import Result, Task
        from globus_compute_endpoint.engines.base import GCFuture

        with self._results:
            self._held += len(tasks)
        for task_id, function_id, code, payload, spec, serializers in tasks:
            if code:
                self._codes[function_id] = code
            code = self._codes.get(function_id, "")
            future = GCFuture(task_id, function_id=function_id)
            future.add_done_callback(self._finished)
            if not code:  # the daemon sends a function's code with its first task
                body = Result(task_id=uuid.UUID(task_id), data=f"unknown function {function_id}")
                future.set_result(messagepack.pack(body))
                continue
            packed = messagepack.pack(Task(task_id=uuid.UUID(task_id), task_buffer=code + payload))
            self.engine.submit(
                task_f=future,
                packed_task=packed,
                resource_specification=json.loads(spec) if spec else {},
                result_serializers=list(serializers),
            )

    def _finished(self, future: Any) -> None:
        """A task's packed Result, as the engine made it, for the daemon (engine's thread)."""
        try:
            body: bytes = future.result()
        except Exception as exc:  # noqa: BLE001 - the engine packs failures; this is its bug
            log.error("task %s: the engine failed it without a result: %r", future.gc_task_id, exc)
            body = (
                b""  # nothing sent: the task stays unfinished in the daemon, runs after a restart
            )
        with self._results:
            self._held -= 1
            if body:
                self._results_ready.append([str(future.gc_task_id), _b64(body)])
            if self._sending or not self._results_ready:  # the sending thread takes it along
                return
            if self._streaming():
                self._results.notify()  # the gather thread sends it, with what follows
                return
            self._sending = True
        self._send_results()

    def _streaming(self) -> bool:
        """Under _results: more results are on their way (tasks wait for a worker)."""
        return self._held > self._workers and len(self._results_ready) < MAX_RESULTS_PER_MESSAGE

    def gather(self) -> None:
        """Send results that came while they streamed in, up to GATHER_S after the first."""
        while not self._done.is_set():
            with self._results:
                if not self._results.wait_for(
                    lambda: self._results_ready and not self._sending, timeout=STATUS_EVERY_S
                ):
                    continue
                deadline = time.monotonic() + GATHER_S
                while self._streaming() and (left := deadline - time.monotonic()) > 0:
                    self._results.wait(left)
                if self._sending or not self._results_ready:
                    continue
                self._sending = True
            self._send_results()

    def _send_results(self) -> None:
        """Send what was gathered, until nothing is left (on whichever thread got there first):
        what finishes during a send goes in the next message."""
        while True:
            with self._results:
                results, self._results_ready = self._results_ready, []
                if not results:
                    self._sending = False
                    return
            try:
                self.send({"t": "results", "results": results})
            except OSError:
                self._done.set()  # the daemon is gone

    def report(self) -> None:
        """Send the engine's status every STATUS_EVERY_S, while the child lives."""
        last: dict[str, Any] = {}
        while not self._done.wait(STATUS_EVERY_S if last else 0.2):
            try:
                now = status(self.engine)
            except Exception as exc:  # noqa: BLE001 - the interchange may be starting
                log.debug("status not available: %r", exc)
                continue
            with self._results:
                self._workers = int(now["workers"])
            if now != last:
                try:
                    self.send(now)
                except OSError:
                    return
                last = now

    def serve(self) -> None:
        """Read task batches until the daemon closes the socket (or SIGTERM arrives)."""
        threading.Thread(target=self.report, name="status", daemon=True).start()
        threading.Thread(target=self.gather, name="gather", daemon=True).start()
        buf = bytearray()
        try:
            while True:
                chunk = self.sock.recv(READ_CHUNK)
                if not chunk:
                    return
                buf += chunk
                for message in take(buf):
                    if message.get("t") == "tasks":
                        self.submit(message["tasks"])
        finally:
            self._done.set()


def _b64(body: bytes) -> str:
    return base64.b64encode(body).decode()


def _stop(signum: int, frame: Any) -> None:
    """SIGTERM while the engine starts: abandon the start, once. The parent-death signal
    can come twice; a second Stop raised inside the cleanup would skip the engine's
    shutdown and leave its interchange and block behind."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stop


def _end_reads(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass  # closed already: the loop has ended


def _first_message(sock: socket.socket) -> dict[str, Any]:
    buf = bytearray()
    while True:
        chunk = sock.recv(READ_CHUNK)
        if not chunk:
            raise Stop
        buf += chunk
        found = take(buf)
        if found:
            start: dict[str, Any] = found[0]
            return start


def run(daemon_pid: int, fd: int) -> int:
    """Start the engine the daemon describes, then serve it tasks until told to stop."""
    signal.signal(signal.SIGTERM, _stop)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != daemon_pid:  # the daemon died before the line above
        return 0
    sock = socket.socket(fileno=fd)
    engine = None
    try:
        start = _first_message(sock)
        os.makedirs(start["run_dir"], exist_ok=True)
        os.chdir(start["run_dir"])
        try:
            engine = build_engine(start["engine"])
            engine.start(endpoint_id=uuid.UUID(start["endpoint_id"]), run_dir=start["run_dir"])
        except Exception as exc:  # noqa: BLE001 - told to the daemon, which retries
            sock.sendall(encode({"t": "failed", "error": f"{type(exc).__name__}: {exc}"}))
            return 1
        cancel_orphans(engine, start.get("orphans", []))
        sock.sendall(encode({"t": "ready"}))
        # Serving, SIGTERM ends the read loop (the next recv sees the end) rather than
        # raising wherever the main thread is: inside the engine's submit, an exception
        # could leave the engine half-updated for the shutdown below.
        signal.signal(signal.SIGTERM, lambda *_: _end_reads(sock))
        Child(sock, engine).serve()
    except Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the shutdown below is not interrupted
        if engine is not None:
            try:
                engine.shutdown()  # cancels its blocks, ends its interchange
            except Exception:  # noqa: BLE001 - last resort below
                log.exception("engine shutdown failed; ending its interchange with this child")
                os.killpg(0, signal.SIGKILL)  # this child's group: it and the interchange
    return 0


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="engine child %(process)d: %(levelname)s %(message)s"
    )
    if list(argv) == ["--check"]:
        text = problem(json.load(sys.stdin))
        print(text)
        return 2 if text else 0
    return run(int(argv[0]), int(argv[1]))


def entry() -> None:
    """The process's whole life (upstream.CHILD_MAIN calls it)."""
    code = main(sys.argv[1:])
    sys.stdout.flush()
    # os._exit: the engine's non-daemon helper threads must not keep a stopped child alive.
    os._exit(code)


if __name__ == "__main__":
    entry()
