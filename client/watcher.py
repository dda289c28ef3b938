"""One watch stream per task group: resolves futures as the daemon streams events.

The stream resumes after the last event it saw, so a daemon restart costs a
reconnect, never a future: the daemon replays what was committed meanwhile.
Besides results it carries SUBMITTED events (seq 0), which give a future its
upstream (Globus) task id as soon as the service assigned it, and RUNNING
events (seq 0), which make future.running() True; neither finishes one. When
the group is released, the stream ends with the daemon's reason, and every
future still open fails with it: none is left waiting.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Iterable

import grpc

from client.connection import Connection, refused, transient
from client.futures import ComputeFuture, resolve
from fxgate_contract._proto import gateway_pb2 as pb

log = logging.getLogger(__name__)


class GroupWatcher:
    """Keeps the futures of one group and the stream that finishes them."""

    def __init__(
        self,
        conn: Connection,
        group_id: str,
        allowed: Callable[[], frozenset[str]] = frozenset,
    ) -> None:
        self.group_id = group_id
        self._conn = conn
        # The strategies a result may be read with now (the Executor's serializer may change).
        self._allowed = allowed
        self._lock = threading.Lock()
        self._futures: dict[str, ComputeFuture] = {}
        # Events that arrived before the Submit answer that names their task (a
        # terminal event replaces a SUBMITTED one: it carries the upstream id too).
        self._early: dict[str, pb.TaskEvent] = {}
        self._submits_in_flight = 0
        self._after = 0
        self._call: grpc.Future | None = None
        self._stop = threading.Event()
        self._restart = threading.Event()
        self._finish_when_idle = False
        # Started once the group exists in the daemon (after a Submit or for a reload).
        self._thread = threading.Thread(
            target=self._run, name=f"fxgate-watch-{group_id[:8]}", daemon=True
        )

    # ------------------------------------------------------------ futures
    def begin_submit(self) -> None:
        with self._lock:
            self._submits_in_flight += 1

    def end_submit(self, futures: Iterable[ComputeFuture]) -> None:
        """Watch futures whose task ids the daemon just gave; resolve early arrivals.

        No futures: the Submit was refused, so the group may not exist yet, and a
        stream started now would be refused for good (NOT_FOUND) before a later
        Submit creates it; the stream starts with the first accepted one.
        """
        ready: list[tuple[ComputeFuture, pb.TaskEvent]] = []
        accepted = False
        with self._lock:
            self._submits_in_flight -= 1
            for fut in futures:
                accepted = True
                assert fut.task_id is not None
                event = self._early.pop(fut.task_id, None)
                if event is not None:  # a result, or SUBMITTED / RUNNING (finishes nothing)
                    ready.append((fut, event))
                    if event.seq:
                        continue
                self._futures[fut.task_id] = fut
            if self._submits_in_flight == 0:
                self._early.clear()
        allowed = self._allowed()
        for fut, event in ready:
            resolve(fut, event, allowed)
        if accepted:
            self._ensure_started()

    def watch(self, futures: Iterable[ComputeFuture], *, replay: bool) -> None:
        """Watch futures of tasks accepted earlier; replay=True streams the group anew."""
        with self._lock:
            for fut in futures:
                assert fut.task_id is not None
                self._futures[fut.task_id] = fut
            if replay:
                self._after = 0
        if replay:
            self._restart.set()
            self._cancel_call()
        self._ensure_started()

    def _ensure_started(self) -> None:
        with self._lock:
            if not self._thread.is_alive() and not self._stop.is_set():
                try:
                    self._thread.start()
                except RuntimeError:
                    pass  # it ran and ended already

    def known(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._futures

    def open_futures(self) -> list[ComputeFuture]:
        with self._lock:
            return [f for f in self._futures.values() if not f.done()]

    def fail_all(self, exc: BaseException) -> None:
        with self._lock:
            futures, self._futures = list(self._futures.values()), {}
        for fut in futures:
            try:
                fut.set_exception(exc)
            except concurrent.futures.InvalidStateError:
                pass  # done meanwhile (a result, or cancelled)

    # --------------------------------------------------------------- life
    def finish_when_idle(self) -> None:
        """Stop the stream once every watched future is done."""
        with self._lock:
            self._finish_when_idle = True
            idle = not self._futures
        if idle:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._cancel_call()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def _cancel_call(self) -> None:
        call = self._call
        if call is not None:
            call.cancel()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._restart.clear()
            with self._lock:
                after = self._after
            try:
                call = self._conn.stub.Watch(
                    pb.WatchRequest(task_group_id=self.group_id, after_seq=after),
                    wait_for_ready=True,
                )
                self._call = call
                if self._stop.is_set() or self._restart.is_set():
                    call.cancel()
                for message in call:
                    self._handle(message.events)
            except grpc.RpcError as exc:
                code = exc.code()
                if self._stop.is_set() or self._restart.is_set():
                    continue
                if transient(exc):
                    log.info(
                        "watch of group %s interrupted (%s); resuming", self.group_id, code.name
                    )
                    self._stop.wait(0.05)
                    continue
                # an error only if a future is left to fail (a released group's were cancelled)
                level = logging.ERROR if self.open_futures() else logging.INFO
                log.log(level, "watch of group %s ended: %s", self.group_id, exc.details())
                self.fail_all(refused(exc))
                return
            finally:
                self._call = None

    def _handle(self, events: Iterable[pb.TaskEvent]) -> None:
        ready: list[tuple[ComputeFuture, pb.TaskEvent]] = []
        with self._lock:
            for event in events:
                if not event.seq:  # SUBMITTED or RUNNING: finishes nothing
                    self._started(event, ready)
                    continue
                if event.seq > self._after:
                    self._after = event.seq
                fut = self._futures.pop(event.task_id, None)
                if fut is not None:
                    ready.append((fut, event))
                elif self._submits_in_flight:
                    self._early[event.task_id] = event
            idle = self._finish_when_idle and not self._futures
        allowed = self._allowed()
        for fut, event in ready:
            resolve(fut, event, allowed)
        if idle:
            self.stop()

    def _started(
        self, event: pb.TaskEvent, ready: list[tuple[ComputeFuture, pb.TaskEvent]]
    ) -> None:
        """A SUBMITTED or RUNNING event: for its future (resolve() applies it, after the
        lock), or kept for the Submit answer, unless a result is kept already (lock held)."""
        fut = self._futures.get(event.task_id)
        if fut is not None:
            ready.append((fut, event))
        elif self._submits_in_flight:
            kept = self._early.get(event.task_id)
            if kept is None or not kept.seq:
                self._early[event.task_id] = event
