"""The embedded upstream: a pool of worker processes on this machine, started on first use.

Unlike concurrent.futures.ProcessPoolExecutor, one worker that dies (a
segfault, os._exit, the OOM killer) fails only the task it was running, and
the pool replaces it. Work is sent in small batches whose size adapts to how
long tasks take: deep for trivial tasks (to pay for the pipe once per batch),
one at a time for slow ones (so no task waits behind another on a busy worker).
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from gateway.models import TaskState
from gateway.store import Completion, PendingTask
from gateway.upstreams.base import (
    FunctionSource,
    PayloadBudget,
    PayloadSource,
    ResultSink,
    with_payloads,
)
from gateway.upstreams.local_worker import Done, Job, worker_main

log = logging.getLogger(__name__)

MAX_DEPTH = 64
# Tasks faster than this are batched to a worker; slower ones go one by one.
BATCH_BELOW_S = 0.005


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    inflight: deque[PendingTask] = field(default_factory=deque)
    known_functions: set[str] = field(default_factory=set)
    started: float = 0.0  # when the task at the head of inflight began


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name}"
    return f"exited with code {exitcode}"


class LocalUpstream:
    """Runs tasks in worker processes and reports outcomes to the sink."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self._size = workers
        self._ctx = multiprocessing.get_context("spawn")
        self._queue: deque[PendingTask] = deque()
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._wake_r, self._wake_w = os.pipe()
        self._running = False
        self._avg_s = 1.0  # moving average of task duration; start cautious
        self._thread = threading.Thread(target=self._loop, name="local-dispatch", daemon=True)
        self._sink: ResultSink | None = None
        self._functions: FunctionSource | None = None
        self._payloads: PayloadSource | None = None
        self._budget = PayloadBudget()  # payload bytes _queue holds; under _lock
        self._code_cache: dict[str, str] = {}
        self._unstored: list[Completion] = []

    # ----------------------------------------------------------- contract
    def start(self, sink: ResultSink, functions: FunctionSource, payloads: PayloadSource) -> None:
        self._sink = sink
        self._functions = functions
        self._payloads = payloads
        self._running = True
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

    def stop(self) -> None:
        self._running = False
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for w in self._workers:
            if w.inflight:
                # Its tasks stay unfinished in the store and run again at the
                # next start (at-least-once); waiting could take forever.
                w.process.kill()
            else:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        for w in self._workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
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

    # ------------------------------------------------------------ workers
    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=worker_main, args=(child,), name="fxgate-worker", daemon=True
        )
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _loop(self) -> None:
        while self._running:
            by_handle: dict[Any, _Worker] = {}
            for w in self._workers:
                by_handle[w.conn] = w
                by_handle[w.process.sentinel] = w
            ready = wait([*by_handle, self._wake_r], timeout=1.0)
            if self._wake_r in ready:
                os.read(self._wake_r, 65536)
            done: list[Completion] = []
            dead: set[int] = set()
            for handle in ready:
                worker = by_handle.get(handle)
                if worker is None or id(worker) in dead:
                    continue
                if not self._drain(worker, done):
                    dead.add(id(worker))
                    done.extend(self._replace(worker))
            with self._lock:
                done, self._unstored = self._unstored + done, []
            if done and self._sink is not None:
                self._sink(done).add_done_callback(functools.partial(self._stored, done))
            self._dispatch()

    def _stored(self, done: list[Completion], fut: Future[list[Completion]]) -> None:
        """Results the store could not take (locked, full) are offered again."""
        if fut.exception() is not None:
            with self._lock:
                self._unstored.extend(done)
            self._wake()

    def _drain(self, worker: _Worker, done: list[Completion]) -> bool:
        """Read every outcome waiting; False when the worker is gone."""
        try:
            while worker.conn.poll():
                task_id, data, code, message, exc = worker.conn.recv()
                self._finish(worker, (task_id, data, code, message, exc), done)
        except (EOFError, OSError):
            return False
        return worker.process.is_alive()

    def _finish(self, worker: _Worker, outcome: Done, done: list[Completion]) -> None:
        task_id, data, code, message, exc = outcome
        # A worker runs its tasks in the order it got them, one at a time.
        if worker.inflight and worker.inflight[0].task_id == task_id:
            worker.inflight.popleft()
        else:
            log.error("worker pid %s reported task %s out of order", worker.process.pid, task_id)
        now = time.monotonic()
        self._avg_s = 0.8 * self._avg_s + 0.2 * (now - worker.started)
        worker.started = now
        done.append(
            Completion(
                state=TaskState.FAILED if code else TaskState.SUCCESS,
                data=data,
                task_id=task_id,
                error_code=code,
                error_message=message,
                exception=exc,
            )
        )

    def _replace(self, worker: _Worker) -> list[Completion]:
        """Fail the task a dead worker was running, requeue the rest, start a new one."""
        worker.process.join(timeout=5)
        reason = _death_reason(worker.process.exitcode)
        failed: list[Completion] = []
        if worker.inflight:
            victim = worker.inflight.popleft()
            log.warning(
                "worker pid %s %s while running task %s", worker.process.pid, reason, victim.task_id
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
            with self._lock:
                for t in reversed(worker.inflight):
                    self._queue.appendleft(self._budget.admit(t))
                    self._queued.add(t.task_id)
        else:
            log.warning("idle worker pid %s %s", worker.process.pid, reason)
        worker.conn.close()
        index = self._workers.index(worker)
        if self._running:
            self._workers[index] = self._spawn()
        return failed

    def _code(self, function_id: str) -> str:
        code = self._code_cache.get(function_id)
        if code is None:
            assert self._functions is not None
            code = self._functions(function_id)[1]
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
            with self._lock:
                share = max(1, -(-len(self._queue) // len(self._workers)))
                take = min(room, share)
                jobs: list[PendingTask] = []
                while self._queue and len(jobs) < take:
                    t = self._queue.popleft()
                    self._queued.discard(t.task_id)
                    self._budget.release(t)
                    jobs.append(t)
            if not jobs:
                return
            self._send(worker, jobs)

    def _send(self, worker: _Worker, jobs: list[PendingTask]) -> None:
        assert self._payloads is not None
        try:  # payloads not kept in memory, in one read; a task finished meanwhile is skipped
            ready = with_payloads(jobs, self._payloads)
        except Exception as exc:  # noqa: BLE001 - the store is down: try again next turn
            log.warning("cannot read %d payloads to send: %s", len(jobs), exc)
            with self._lock:
                for t in reversed(jobs):
                    self._queue.appendleft(self._budget.admit(t))
                    self._queued.add(t.task_id)
            return
        if not ready:
            return
        jobs = [t for t, _ in ready]
        batch: list[Job] = []
        for t, payload in ready:
            code = ""
            if t.function_id not in worker.known_functions:
                try:
                    code = self._code(t.function_id)
                except KeyError:
                    code = ""
                worker.known_functions.add(t.function_id)
            batch.append((t.task_id, t.function_id, code, payload, t.result_serializers))
        if not worker.inflight:
            worker.started = time.monotonic()
        worker.inflight.extend(jobs)
        try:
            worker.conn.send(batch)
        except OSError:
            pass  # the worker died; its sentinel reports it on the next turn
