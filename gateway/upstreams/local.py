"""The embedded upstream: a pool of worker processes on this machine, started on first use.

Unlike concurrent.futures.ProcessPoolExecutor, one worker that dies (a
segfault, os._exit, the OOM killer) fails only the task it was running, and
the pool replaces it. Work is sent in small batches whose size adapts to how
long tasks take: deep for trivial tasks (to pay for the socket once per batch),
one at a time for slow ones (so no task waits behind another on a busy worker).

Why the pool cannot deadlock: the dispatch thread never blocks on a worker.
Its socket ends are non-blocking; it writes what a socket takes and keeps the
rest in that worker's out buffer until poll() says the socket is writable
again, and it reads whatever outcomes are there. A worker does block, on its
reads and its writes, but only ever on the dispatch thread, which always
comes back to read and write. (With blocking pipes, a large batch going out
and large results coming back left the daemon and both workers each blocked
writing to the other, for good.) Flow control is by bytes as well as by count:
a worker has at most MAX_INFLIGHT_BYTES of payloads sent or waiting to be sent,
so the out buffers stay small; a batch always holds at least one task.

Workers die with the daemon: each sets PR_SET_PDEATHSIG to SIGKILL, which
fires when the *thread* that started it ends, so workers are started only by
the dispatch thread, which lives as long as the pool. A task whose worker was
killed that way has no result and runs again from the start after a restart;
it never runs twice at the same time.

When a task starts: a worker runs the tasks of a batch in order, one at a
time, and reports each as it ends; so the task at the head of a worker's
in-flight queue is the one running, from the moment it was sent to an idle
worker or the task before it reported done. That is what RUNNING means here.
It is recorded once a task has run MARK_RUNNING_AFTER_S (one store write per
dispatch turn, for the few tasks that crossed it): tasks faster than that go
from ACCEPTED straight to their result, so a pool of trivial tasks pays
nothing for it.

Stopping a running task (stop_running): CANCELLED is committed first, then
its worker is killed and replaced; the other tasks that worker held go back
to the front of the queue. A task waiting at a worker behind another is
stopped when it reaches the head.

Workers get a clean environment, set at exec (so /proc/self/environ holds
nothing else either): a few variables Python and common tools need
(BASE_ENV) and the ones the ``worker_env`` setting passes on. The daemon's
credentials (FXGATE_*, GLOBUS_*, and anything else in its environment) stay
out of task code and so out of stored results.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from fxgate_contract.states import TaskState
from gateway.logids import ids
from gateway.run_dirs import sweep_stale
from gateway.store.records import Completion, PendingTask
from gateway.upstreams.base import (
    FunctionSource,
    Measures,
    PayloadBudget,
    PayloadSource,
    ResultSink,
    RunningSink,
    UpstreamPorts,
    with_payloads,
)
from gateway.upstreams.local_worker import HEADER, Done, Job, encode

log = logging.getLogger(__name__)

MAX_DEPTH = 64
# Tasks faster than this are batched to a worker; slower ones go one by one.
BATCH_BELOW_S = 0.005
# Payload bytes sent (or waiting to be sent) to one worker and not yet finished:
# 64 tasks of 8 KB fit; 1 MB tasks go one at a time.
MAX_INFLIGHT_BYTES = 1 << 20
READ_CHUNK = 1 << 18
# A task at the head of a worker this long is recorded RUNNING (see the module docstring).
MARK_RUNNING_AFTER_S = 0.02
# The longest the dispatch thread waits for a worker or the wake pipe, in ms.
POLL_MS = 1000
# What a task's environment holds besides the worker_env setting. PYTHONPATH
# because dill ships importable functions by reference: a task needs the same
# modules the daemon's interpreter sees.
BASE_ENV = ("PATH", "HOME", "LANG", "TZ", "TMPDIR", "USER", "LOGNAME", "PYTHONPATH")


def worker_environment(passed: Sequence[str], env: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a worker: BASE_ENV and LC_* from env, then worker_env entries.

    An entry ``NAME`` passes the daemon's value on (if it has one); ``NAME=value`` sets it.
    """
    clean = {k: v for k, v in env.items() if k in BASE_ENV or k.startswith("LC_")}
    for entry in passed:
        name, eq, value = entry.partition("=")
        if eq:
            clean[name] = value
        elif name in env:
            clean[name] = env[name]
    return clean


@dataclass
class _Worker:
    """One worker process and its socket; owned by the dispatch thread."""

    process: subprocess.Popen[bytes]
    sock: socket.socket
    pidfd: int
    # (task, payload bytes) in the order sent; the head is running.
    inflight: deque[tuple[PendingTask, int]] = field(default_factory=deque)
    inflight_bytes: int = 0
    out: deque[memoryview] = field(default_factory=deque)  # framed, not yet written
    inbuf: bytearray = field(default_factory=bytearray)  # read, not yet a whole message
    known_functions: set[str] = field(default_factory=set)
    started: float = 0.0  # when the task at the head of inflight began
    marked: str = ""  # the last task of this worker recorded RUNNING


@dataclass
class _StopRequest:
    """One stop_running call: tasks still to settle, those stopped, and who waits.

    Made by the caller; once in the dispatch thread's list, only that thread
    changes it (and resolves the future).
    """

    left: set[str]
    future: Future[set[str]]
    stopped: set[str] = field(default_factory=set)


def _stopped(task_id: str) -> Completion:
    """The CANCELLED state of a running task about to be stopped."""
    return Completion(
        state=TaskState.CANCELLED,
        data="",
        task_id=task_id,
        error_code="Cancelled",
        error_message="cancelled while running: its worker process was stopped",
    )


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name}"
    return f"exited with code {exitcode}"


class LocalUpstream:
    """Runs tasks in worker processes and reports outcomes to the sink.

    The queue and the set of queued ids are shared with the callers of
    enqueue/cancel under ``_lock``; workers, their buffers and ``_avg_s``
    belong to the dispatch thread.
    """

    name = "local"

    def __init__(self, workers: int, worker_env: Sequence[str] = ()) -> None:
        self._size = workers
        self._env = worker_environment(worker_env, os.environ)
        self._queue: deque[PendingTask] = deque()
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._wake_r, self._wake_w = os.pipe()
        self._alive = False
        self._avg_s = 1.0  # moving average of task duration; start cautious
        self._thread = threading.Thread(target=self._loop, name="local-dispatch", daemon=True)
        self._sink: ResultSink | None = None
        self._functions: FunctionSource | None = None
        self._payloads: PayloadSource | None = None
        self._budget = PayloadBudget()  # payload bytes _queue holds; under _lock
        self._code_cache: dict[str, str] = {}
        self._unstored: list[Completion] = []
        self._chunk = bytearray(READ_CHUNK)
        self._running: RunningSink | None = None
        # Stop requests: new ones and commit outcomes arrive under _lock (from
        # gRPC call threads and the store-writer); the rest is the dispatch thread's.
        self._stop_inbox: list[_StopRequest] = []
        self._stop_stored: list[tuple[list[str], bool]] = []  # (task ids, committed?)
        self._stop_requests: list[_StopRequest] = []
        self._committing: set[str] = set()  # CANCELLED written, not yet committed

    # ----------------------------------------------------------- contract
    def start(self, ports: UpstreamPorts) -> None:
        # The local upstream needs no store methods: only the sink and the two sources.
        self._sink = ports.sink
        self._functions = ports.functions
        self._payloads = ports.payloads
        self._running = ports.running
        self._alive = True
        swept = sweep_stale()
        if swept:
            log.info("removed %d task sandbox directories left by killed workers", swept)
        self._thread.start()

    def enqueue(self, tasks: Sequence[PendingTask]) -> None:
        with self._lock:
            for t in tasks:
                if t.task_id not in self._queued:
                    self._queue.append(self._budget.admit(t))
                    self._queued.add(t.task_id)
        self._wake()

    def cancel(self, task_ids: Sequence[str]) -> set[str]:
        with self._lock:
            gone = {t for t in task_ids if t in self._queued}
            if gone:
                self._queued -= gone
                for t in self._queue:
                    if t.task_id in gone:
                        self._budget.release(t)
                self._queue = deque(t for t in self._queue if t.task_id not in gone)
        return gone

    def stop_running(self, task_ids: Sequence[str]) -> Future[set[str]]:
        """Stop tasks at the workers (see the module docstring); resolves to those stopped."""
        request = _StopRequest(set(task_ids), Future())
        with self._lock:
            self._stop_inbox.append(request)
        self._wake()
        return request.future

    def stop(self) -> None:
        self._alive = False
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def describe(self) -> str:
        with self._lock:
            queued = len(self._queue)
        running = sum(len(w.inflight) for w in self._workers)
        return (
            f"{len(self._workers)} of {self._size} workers started, "
            f"{running} tasks at workers, {queued} queued"
        )

    def load(self) -> dict[str, int]:
        """Its workers and tasks, in the fields of the web service's endpoint status details.

        Read from a daemon thread while the dispatch thread works: the counts
        are a moment's view, as describe()'s are.
        """
        with self._lock:
            queued = len(self._queue)
        workers = list(self._workers)
        running = sum(len(w.inflight) for w in workers)
        busy = sum(1 for w in workers if w.inflight)
        return {
            "total_workers": self._size,
            "idle_workers": len(workers) - busy,
            "pending_tasks": queued,
            "outstanding_tasks": queued + running,
            "managers": 1,
        }

    def measures(self) -> Measures:
        """Queued tasks, tasks at workers and workers running: a moment's view, as load()'s."""
        with self._lock:
            queued = len(self._queue)
        workers = list(self._workers)
        running = sum(len(w.inflight) for w in workers)
        return Measures(queued=queued, in_flight=running, workers=len(workers))

    # ------------------------------------------------------------ workers
    def _spawn(self) -> _Worker:
        """Start a worker; only on the dispatch thread, whose end kills its workers."""
        ours, theirs = socket.socketpair()
        with theirs:
            proc = subprocess.Popen(
                # -P: the daemon's working directory does not shadow fxgate's own modules.
                [sys.executable, "-P", "-m", "gateway.upstreams.local_worker"]
                + [str(os.getpid()), str(theirs.fileno())],
                env=self._env,
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        ours.setblocking(False)
        return _Worker(proc, ours, os.pidfd_open(proc.pid))

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _loop(self) -> None:
        try:
            while self._alive:
                self._turn()
        finally:
            self._close_workers()

    def _turn(self) -> None:
        """Wait for any worker or the wake pipe, then read, write and dispatch what is ready."""
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        by_fd: dict[int, _Worker] = {}
        for w in self._workers:
            poller.register(w.sock, select.POLLIN | (select.POLLOUT if w.out else 0))
            poller.register(w.pidfd, select.POLLIN)
            by_fd[w.sock.fileno()] = by_fd[w.pidfd] = w
        done: list[Completion] = []
        for fd, _ in poller.poll(self._poll_ms()):
            if fd == self._wake_r:
                os.read(self._wake_r, 65536)
                continue
            worker = by_fd[fd]
            if worker not in self._workers:
                continue  # already replaced this turn
            exited = fd == worker.pidfd
            if not (self._read(worker, done) and self._flush(worker)) or exited:
                done.extend(self._replace(worker))
        self._serve_stops(done)
        with self._lock:
            done, self._unstored = self._unstored + done, []
        if done and self._sink is not None:
            # _stored runs on the store-writer thread once the results are committed.
            self._sink(done).add_done_callback(functools.partial(self._stored, done))
        self._dispatch()
        self._mark_started()

    # ------------------------------------------------------------ starts
    def _poll_ms(self) -> int:
        """How long a turn may wait: until the next head task is due to be marked RUNNING."""
        if self._running is None:
            return POLL_MS
        now, wait = time.monotonic(), POLL_MS / 1000
        for w in self._workers:
            if w.inflight and w.inflight[0][0].task_id != w.marked:
                wait = min(wait, w.started + MARK_RUNNING_AFTER_S - now)
        return max(1, int(wait * 1000) + 1)

    def _mark_started(self) -> None:
        """Record RUNNING for head tasks that have run MARK_RUNNING_AFTER_S; one write a turn."""
        if self._running is None:
            return
        now = time.monotonic()
        started: dict[str, str] = {}
        for w in self._workers:
            if w.inflight and now - w.started >= MARK_RUNNING_AFTER_S:
                head = w.inflight[0][0]
                if head.task_id != w.marked:
                    w.marked = head.task_id
                    started[head.task_id] = head.group_id
        if started:
            self._running(started)  # a failed write only leaves them ACCEPTED: not retried

    # ------------------------------------------------------------- stops
    def _serve_stops(self, done: list[Completion]) -> None:
        """Take new stop requests, kill workers whose task's CANCELLED is committed, and
        write CANCELLED for requested tasks that are running now (dispatch thread)."""
        if not (self._stop_inbox or self._stop_stored or self._stop_requests):
            return  # the usual turn: no lock taken (a list's truth is read atomically)
        with self._lock:
            fresh, self._stop_inbox = self._stop_inbox, []
            stored, self._stop_stored = self._stop_stored, []
        self._stop_requests += fresh
        if not (self._stop_requests or stored):
            return
        for task_ids, committed in stored:
            self._committing.difference_update(task_ids)
            settled = set(task_ids)
            if committed:
                for w in [w for w in self._workers if w.inflight]:
                    if w.inflight[0][0].task_id in settled:
                        done.extend(self._replace(w, stopped=True))
            for request in self._stop_requests:
                if committed:
                    request.stopped |= request.left & settled
                request.left -= settled
        heads = {w.inflight[0][0].task_id: w for w in self._workers if w.inflight}
        held = {t.task_id for w in self._workers for t, _ in w.inflight} | self._committing
        wanted: dict[str, None] = {}
        for request in self._stop_requests:
            request.left &= held  # the others finished, or never reached a worker
            wanted.update((t, None) for t in request.left if t in heads)
        due = [t for t in wanted if t not in self._committing]
        if due and self._sink is not None:
            self._committing.update(due)
            self._sink([_stopped(t) for t in due]).add_done_callback(
                functools.partial(self._stop_committed, due)
            )
        for request in [r for r in self._stop_requests if not r.left]:
            self._stop_requests.remove(request)
            request.future.set_result(request.stopped)

    def _stop_committed(self, task_ids: list[str], fut: Future[list[Completion]]) -> None:
        """CANCELLED of tasks to stop was committed (or not): back to dispatch (writer thread)."""
        with self._lock:
            self._stop_stored.append((task_ids, fut.exception() is None))
        self._wake()

    def _stored(self, done: list[Completion], fut: Future[list[Completion]]) -> None:
        """Results the store could not take (locked, full) are offered again (writer thread)."""
        if fut.exception() is not None:
            with self._lock:
                self._unstored.extend(done)
            self._wake()

    def _read(self, worker: _Worker, done: list[Completion]) -> bool:
        """Take every outcome the socket holds now; False when the worker is unusable."""
        view = memoryview(self._chunk)
        try:
            while True:
                n = worker.sock.recv_into(view)
                if n == 0:
                    return False
                worker.inbuf += view[:n]
                if n < len(view):
                    break
        except BlockingIOError:
            pass
        except OSError:
            return False
        buf, pos = worker.inbuf, 0
        while len(buf) - pos >= HEADER.size:
            (size,) = HEADER.unpack_from(buf, pos)
            end = pos + HEADER.size + size
            if len(buf) < end:
                break
            try:
                outcome = Done.from_json(json.loads(buf[pos + HEADER.size : end]))
            except ValueError:
                outcome = None
            pos = end
            if outcome is None or not self._finish(worker, outcome, done):
                pid = worker.process.pid
                log.error("worker wrote a malformed outcome", extra=ids(worker_pid=pid))
                return False
        del buf[:pos]
        return True

    def _flush(self, worker: _Worker) -> bool:
        """Write what the socket takes now, never waiting; False when the worker is gone."""
        try:
            while worker.out:
                head = worker.out[0]
                n = worker.sock.send(head)
                if n < len(head):
                    worker.out[0] = head[n:]
                    break
                worker.out.popleft()
        except BlockingIOError:
            pass
        except OSError:
            return False
        return True

    def _finish(self, worker: _Worker, outcome: Done, done: list[Completion]) -> bool:
        task_id = outcome.task_id
        # A worker runs its tasks in the order it got them, one at a time.
        if not worker.inflight or worker.inflight[0][0].task_id != task_id:
            return False
        _, size = worker.inflight.popleft()
        worker.inflight_bytes -= size
        now = time.monotonic()
        self._avg_s = 0.8 * self._avg_s + 0.2 * (now - worker.started)
        worker.started = now
        done.append(
            Completion(
                state=TaskState.FAILED if outcome.error_code else TaskState.SUCCESS,
                data=outcome.data,
                task_id=task_id,
                error_code=outcome.error_code,
                error_message=outcome.error_message,
                exception=outcome.exception,
            )
        )
        return True

    def _replace(self, worker: _Worker, stopped: bool = False) -> list[Completion]:
        """Fail the task a dead worker was running, requeue the rest, start a new one.

        stopped: killed here to stop its task, whose CANCELLED is committed already.
        """
        worker.process.kill()  # if it only broke the protocol; no-op once it was reaped
        worker.process.wait()
        reason = _death_reason(worker.process.returncode)
        failed: list[Completion] = []
        if stopped:
            victim, _ = worker.inflight.popleft()
            log.info(
                "stopped worker pid %s: its task %s was cancelled",
                worker.process.pid,
                victim.task_id,
            )
            self._requeue(worker)
        elif worker.inflight:
            victim, _ = worker.inflight.popleft()
            log.warning(
                "worker %s while running a task",
                reason,
                extra=ids(
                    group=victim.group_id, task=victim.task_id, worker_pid=worker.process.pid
                ),
            )
            message = f"the worker process running this task {reason}"
            failed.append(
                Completion(
                    state=TaskState.FAILED,
                    data=f"WorkerLost: {message}",
                    task_id=victim.task_id,
                    error_code="WorkerLost",
                    error_message=message,
                )
            )
            self._requeue(worker)
        else:
            log.warning("idle worker %s", reason, extra=ids(worker_pid=worker.process.pid))
        worker.sock.close()
        os.close(worker.pidfd)
        index = self._workers.index(worker)
        if self._alive:
            self._workers[index] = self._spawn()
        else:
            del self._workers[index]
        return failed

    def _requeue(self, worker: _Worker) -> None:
        """The tasks a worker held and never started, back to the front of the queue."""
        with self._lock:
            for t, _ in reversed(worker.inflight):
                self._queue.appendleft(self._budget.admit(t))
                self._queued.add(t.task_id)

    def _close_workers(self) -> None:
        """End every worker before the dispatch thread ends (which would SIGKILL them anyway).

        An idle worker exits on end of input; a busy one is killed, and its tasks
        stay unfinished in the store and run again at the next start (waiting
        could take forever).
        """
        for w in self._workers:
            if w.inflight:
                w.process.kill()
            w.sock.close()
        for w in self._workers:
            try:
                w.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait()
            os.close(w.pidfd)

    def _code(self, function_id: str) -> str:
        code = self._code_cache.get(function_id)
        if code is None:
            assert self._functions is not None
            code = self._functions(function_id).code
            self._code_cache[function_id] = code
        return code

    def _dispatch(self) -> None:
        if not self._workers:
            with self._lock:
                idle = not self._queue
            if idle:
                return
            # Started on first use: a daemon that only serves Globus endpoints
            # never pays for the pool.
            self._workers = [self._spawn() for _ in range(self._size)]
            log.info("local upstream: started %d worker processes", self._size)
        depth = max(1, min(MAX_DEPTH, int(BATCH_BELOW_S / max(self._avg_s, 1e-6))))
        for worker in self._workers:
            room = depth - len(worker.inflight)
            if room <= 0 or (worker.inflight and room < depth // 2):
                continue
            budget = MAX_INFLIGHT_BYTES - worker.inflight_bytes
            jobs: list[tuple[PendingTask, int]] = []
            with self._lock:
                take = min(room, max(1, -(-len(self._queue) // len(self._workers))))
                while self._queue and len(jobs) < take:
                    size = self._queue[0].size()
                    if size > budget and (jobs or worker.inflight):
                        break  # a batch always holds at least one task
                    t = self._queue.popleft()
                    self._queued.discard(t.task_id)
                    self._budget.release(t)
                    jobs.append((t, size))
                    budget -= size
            if jobs:
                self._send(worker, jobs)

    def _send(self, worker: _Worker, jobs: list[tuple[PendingTask, int]]) -> None:
        assert self._payloads is not None
        try:  # payloads not kept in memory, in one read; a task finished meanwhile is skipped
            ready = with_payloads([t for t, _ in jobs], self._payloads)
        except Exception as exc:  # noqa: BLE001 - the store is down: try again next turn
            log.warning("cannot read %d payloads to send: %s", len(jobs), exc)
            with self._lock:
                for t, _ in reversed(jobs):
                    self._queue.appendleft(self._budget.admit(t))
                    self._queued.add(t.task_id)
            return
        jobs = [(t, len(payload)) for t, payload in ready]
        if not jobs:
            return
        batch: list[Job] = []
        for (t, size), (_, payload) in zip(jobs, ready, strict=True):
            code = ""
            if t.function_id not in worker.known_functions:
                try:
                    code = self._code(t.function_id)
                except KeyError:
                    code = ""
                worker.known_functions.add(t.function_id)
            batch.append(
                Job(
                    t.task_id,
                    t.function_id,
                    code,
                    payload,
                    list(t.result_serializers),
                    t.options.resource_specification,
                )
            )
            worker.inflight_bytes += size
        if not worker.inflight:
            worker.started = time.monotonic()
        worker.inflight.extend(jobs)
        worker.out.append(memoryview(encode(batch)))
        self._flush(worker)  # a dead worker's pidfd reports it on the next turn
