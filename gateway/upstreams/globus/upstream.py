"""The Globus Compute upstream: batched HTTP submits out, streamed results back.

Accepted tasks wait in memory (they are durable in the store already), their
payloads only within a byte budget (base.PayloadBudget), and go out in v3
batches bound by size and time; the payloads a batch lacks are read from the
store just before it goes. While the web service is
unreachable or throttling, tasks stay accepted and go out when it answers; a
4xx fails exactly the tasks of that batch with the service's message. Results
come back over the one broker connection (a ResultSource, injected: the real
one is results.py's ResultStream); when the broker has been unreachable for
`broker_fallback_s`, task status is polled over HTTP until streaming works
again. Results are given their fxgate task id from task_ids.py on the way to
the sink.

Threads: SUBMIT_THREADS globus-submit threads, one globus-poll thread, and
the result source's own; enqueue, cancel, describe and stop run on the
daemon's threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from fxgate_contract.states import TaskState
from gateway.config import GlobusSettings
from gateway.errors import UpstreamError
from gateway.store.records import Completion, PendingTask, TaskOptions
from gateway.upstreams.base import (
    Measures,
    PayloadBudget,
    ResultSource,
    UpstreamPorts,
    with_payloads,
)
from gateway.upstreams.globus.task_ids import TaskIds
from gateway.upstreams.globus.web import WebService

log = logging.getLogger(__name__)

STATUS_CHUNK = 128
# Batches submitted side by side (each waits mostly on the service and the commit).
SUBMIT_THREADS = 4
# How often consumers of finished groups are let go.
SWEEP_INTERVAL_S = 30.0
# Payload bytes of one submit, at most (a batch always holds at least one task): the
# batch's payloads are in memory while it is submitted, and again at each retry.
SUBMIT_BYTES = 16 * 1024 * 1024


# What the tasks of one submit request share: group, endpoint, result serializers and
# options (tasks with equal options share one TaskOptions object: its hash is cheap).
BatchKey = tuple[str, str, tuple[str, ...], TaskOptions]


def _batch_key(t: PendingTask) -> BatchKey:
    return (t.group_id, t.endpoint_id, t.result_serializers, t.options)


class GlobusUpstream:
    """Submits to the Globus Compute web service; streams results from its broker."""

    name = "globus"

    def __init__(self, settings: GlobusSettings, web: WebService, results: ResultSource):
        self.settings = settings
        self.web = web
        self.results = results  # its own thread calls _deliver; any thread calls the rest
        self.upstream_key = f"globus:{self.web.base_url}"
        self._ports: UpstreamPorts | None = None  # set by start, before any thread runs
        self._task_ids = TaskIds()  # locked itself
        # Everything below up to _threads is shared by the globus-submit threads, the
        # globus-poll thread and the daemon's threads (enqueue, cancel, describe), and
        # is read and written only with _cond held.
        self._cond = threading.Condition()
        # Tasks waiting to be submitted, by what one batch must share, oldest key first.
        self._queues: dict[BatchKey, deque[PendingTask]] = {}
        self._queued = 0
        self._budget = PayloadBudget()  # payload bytes _queues holds
        self._in_flight = 0  # batches taken and not yet settled
        self._sending = 0  # tasks in those batches
        self._creating: set[str] = set()  # groups whose first batch is in flight
        self._pause_until = 0.0  # the service asked us to wait (Retry-After)
        self._delay = 0.5  # the next retry's wait when the service gave none
        self._fn_ids: dict[str, str] = {}  # function id -> upstream function id
        self._group_ids: dict[str, str] = {}  # group id -> upstream group id
        self.submitted = 0  # tasks the service accepted
        # Set by start and stop (daemon threads); read unlocked by the upstream's threads,
        # which at worst take one more turn.
        self._running = False
        self._stopped = threading.Event()  # wakes the globus-poll thread at stop
        self._threads: list[threading.Thread] = []  # start and stop only

    # ----------------------------------------------------------- contract
    def start(self, ports: UpstreamPorts) -> None:
        self._ports = ports
        for group in ports.store.groups_with_upstream_ids(self.name):
            if group.upstream_group_id:
                with self._cond:
                    self._group_ids[group.id] = group.upstream_group_id
                self.results.watch(group.upstream_group_id)
        self._running = True
        self.results.start(self._deliver, ports.store.quarantine, self._submits_in_flight)
        targets = [(self._submit_loop, f"globus-submit-{n}") for n in range(SUBMIT_THREADS)]
        for target, name in [*targets, (self._poll_loop, "globus-poll")]:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("Globus upstream: %s", self.web.base_url)

    def enqueue(self, tasks: Sequence[PendingTask]) -> None:
        fresh = [t for t in tasks if t.state == TaskState.ACCEPTED]
        if fresh:
            with self._cond:
                self._requeue(fresh)
                self._cond.notify()

    def cancel(self, task_ids: Sequence[str]) -> set[str]:
        wanted = set(task_ids)
        gone: set[str] = set()
        with self._cond:
            for key, queue in list(self._queues.items()):
                kept = deque(t for t in queue if t.task_id not in wanted)
                if len(kept) == len(queue):
                    continue
                for t in queue:
                    if t.task_id in wanted:
                        gone.add(t.task_id)
                        self._budget.release(t)
                self._queued -= len(queue) - len(kept)
                if kept:
                    self._queues[key] = kept
                else:
                    del self._queues[key]
        return gone

    def _requeue(self, tasks: Sequence[PendingTask], *, front: bool = False) -> None:
        """Queue tasks under their batch keys (with the lock held)."""
        for t in reversed(tasks) if front else tasks:
            t = self._budget.admit(t)
            queue = self._queues.setdefault(_batch_key(t), deque())
            if front:
                queue.appendleft(t)
            else:
                queue.append(t)
        self._queued += len(tasks)

    def stop(self) -> None:
        self._running = False
        self._stopped.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=15)
        self.results.stop()
        self.web.close()

    def describe(self) -> str:
        with self._cond:
            queued, submitted = self._queued, self.submitted
        results = self.results
        if self._ports is None:
            broker = "not started"
        elif results.down_since is None:
            broker = f"broker connected, consuming {len(results.watched())} queues"
        else:
            down = time.monotonic() - results.down_since
            polling = down >= self.settings.broker_fallback_s
            broker = f"broker unreachable for {down:.0f} s" + (
                ", polling over HTTP" if polling else ""
            )
        return (
            f"{self.web.base_url}: {submitted} submitted, {queued} waiting to submit; "
            f"{broker}; {results.received} result messages received"
        )

    def measures(self) -> Measures:
        """Tasks waiting to be submitted and in submit requests; the broker's counts."""
        with self._cond:
            queued, sending, submitted = self._queued, self._sending, self.submitted
        return Measures(
            queued=queued,
            in_flight=sending,
            submitted=submitted,
            broker=self.results.measures(),
        )

    # ----------------------------------------------------------- lookups
    # gateway/directory.py's ServiceDirectory: what the SDK's Client asks the service,
    # asked with the daemon's credentials. Called on the daemon's call threads.
    def endpoint_status(self, endpoint_id: str) -> Any:
        return self.web.endpoint_status(endpoint_id)

    def endpoint_metadata(self, endpoint_id: str) -> Any:
        return self.web.endpoint(endpoint_id)

    def endpoints(self, role: str) -> Any:
        return self.web.endpoints(role)

    def function_record(self, function_id: str) -> Any:
        return self.web.function(function_id)

    # ----------------------------------------------------------- results
    def _deliver(self, completions: Sequence[Completion]) -> Future[list[Completion]]:
        """To the sink, with the fxgate task id of each result whose submit we remember.

        Called on the result source's thread and on the globus-poll thread.
        """
        assert self._ports is not None
        return self._ports.sink(self._task_ids.resolve(completions))

    def _submits_in_flight(self) -> bool:
        """Whether a result for an unknown task may yet be named by a submit (any thread)."""
        with self._cond:
            return self._in_flight > 0

    # ------------------------------------------------------------ submit
    def _take(self) -> list[PendingTask]:
        """Up to batch_size tasks (SUBMIT_BYTES) of one (group, endpoint), after a short wait.

        Groups take turns, so one big group does not hold every submitter
        while a small one waits. A group's first batch goes out alone: it
        creates the upstream group, and two at once would create two; once
        the upstream group is known, its batches go out side by side. None
        go out while the service asked to wait.
        """
        with self._cond:
            coalesced = False
            while self._running:
                pause = self._pause_until - time.monotonic()
                key = next((k for k in self._queues if k[0] not in self._creating), None)
                if pause > 0 or key is None:
                    self._cond.wait(pause if pause > 0 else 1.0)
                    continue
                if not coalesced and self._queued < self.settings.batch_size:
                    coalesced = True
                    self._cond.wait(self.settings.batch_interval_ms / 1000)
                    continue
                queue = self._queues.pop(key)
                batch = [queue.popleft()]
                size = batch[0].size()
                while queue and len(batch) < self.settings.batch_size:
                    size += queue[0].size()
                    if size > SUBMIT_BYTES:
                        break
                    batch.append(queue.popleft())
                for t in batch:
                    self._budget.release(t)
                if queue:
                    self._queues[key] = queue  # to the back: the next group's turn
                self._queued -= len(batch)
                if key[0] not in self._group_ids:
                    self._creating.add(key[0])
                self._in_flight += 1
                self._sending += len(batch)
                return batch
            return []

    def _submit_loop(self) -> None:
        while self._running:
            batch = self._take()
            if not batch:
                continue
            try:
                self._submit(batch)
                with self._cond:
                    self._delay = 0.5
            except UpstreamError as exc:
                if exc.retryable:
                    with self._cond:
                        wait = exc.retry_after if exc.retry_after is not None else self._delay
                        self._requeue(batch, front=True)
                        self._pause_until = time.monotonic() + wait
                        self._delay = min(self._delay * 2, 30.0)
                    log.warning("submit of %d tasks deferred %.1f s: %s", len(batch), wait, exc)
                else:
                    log.error("web service refused %d tasks: %s", len(batch), exc)
                    self._fail(batch, str(exc))
            except Exception as exc:  # noqa: BLE001 - keep the submitter alive
                log.exception("submit of %d tasks failed unexpectedly", len(batch))
                self._fail(batch, f"fxgate could not submit this task: {exc}")
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._sending -= len(batch)
                    self._creating.discard(batch[0].group_id)
                    self._cond.notify_all()

    def _upstream_function(self, function_id: str) -> str:
        """The service's id of a function: remembered, stored, or registered now.

        An id fxgate never registered is the service's own (a script may submit
        to a function registered with the Globus Compute SDK): sent as it is.
        """
        assert self._ports is not None
        with self._cond:
            found = self._fn_ids.get(function_id)
        if found is not None:
            return found
        store = self._ports.store
        found = store.registration(function_id, self.upstream_key)
        if found is None:
            try:
                function = self._ports.functions(function_id)
            except KeyError:
                found = function_id  # the service's own id: nothing to store
            else:
                found = self.web.register_function(function)
                store.save_registration(function_id, self.upstream_key, found).result()
        with self._cond:
            self._fn_ids[function_id] = found
        return found

    def _upstream_group(self, group_id: str) -> str | None:
        """The service's id of a task group, if its first submit went through."""
        assert self._ports is not None
        with self._cond:
            found = self._group_ids.get(group_id)
        if found is None:
            group = self._ports.store.group(group_id)
            found = group.upstream_group_id if group else None
        return found

    def _submit(self, batch: list[PendingTask]) -> None:
        assert self._ports is not None
        store = self._ports.store
        ready = with_payloads(batch, self._ports.payloads)  # finished meanwhile: left out
        if not ready:
            return
        first = ready[0][0]
        by_function: dict[str, list[tuple[PendingTask, str]]] = {}
        for t, payload in ready:
            by_function.setdefault(self._upstream_function(t.function_id), []).append((t, payload))
        upstream_group = self._upstream_group(first.group_id)
        reply = self.web.submit(
            first.endpoint_id,
            upstream_group,
            {fid: [payload for _, payload in tps] for fid, tps in by_function.items()},
            list(first.result_serializers),
            first.options,
        )
        if upstream_group is None:
            upstream_group = reply.task_group_id
            store.set_upstream_group(first.group_id, upstream_group).result()
        with self._cond:
            self._group_ids[first.group_id] = upstream_group
        self.results.watch(upstream_group)
        mapping: dict[str, str] = {}
        ignored: list[PendingTask] = []
        for fid, tps in by_function.items():
            ids = reply.tasks.get(fid, [])
            if len(ids) != len(tps):
                ignored.extend(t for t, _ in tps)
                continue
            mapping.update((t.task_id, up) for (t, _), up in zip(tps, ids, strict=True))
        self._ports.submitted(first.group_id, mapping).result()  # and tells the watchers
        # before _in_flight drops: held results find them
        self._task_ids.remember(mapping, first.group_id)
        with self._cond:
            self.submitted += len(mapping)
        if ignored:
            self._fail(ignored, "the web service did not return a task id for this task")

    def _fail(self, tasks: list[PendingTask], message: str) -> None:
        assert self._ports is not None
        self._ports.sink(
            [
                Completion(
                    TaskState.FAILED,
                    message,
                    task_id=t.task_id,
                    error_code="UpstreamRejected",
                    error_message=message,
                )
                for t in tasks
            ]
        )

    # ---------------------------------------------------- polling fallback
    def _poll_loop(self) -> None:
        swept = time.monotonic()
        while not self._stopped.wait(self.settings.poll_interval_s):
            if time.monotonic() - swept > SWEEP_INTERVAL_S:
                swept = time.monotonic()
                self._sweep_consumers()
            down_since = self.results.down_since
            if down_since is None:
                continue
            if time.monotonic() - down_since < self.settings.broker_fallback_s:
                continue
            try:
                polled = self.poll_once()
            except Exception as exc:  # noqa: BLE001 - try again next round
                log.warning("status polling failed: %s", exc)
                continue
            if polled:
                log.info("broker unreachable: %d results fetched over HTTP", polled)

    def _sweep_consumers(self) -> None:
        """Stop consuming the queues of groups whose tasks have all finished."""
        assert self._ports is not None
        try:
            open_groups = {
                g.upstream_group_id for g in self._ports.store.groups_with_upstream_ids(self.name)
            }
        except Exception as exc:  # noqa: BLE001 - try again next round
            log.warning("consumer sweep failed: %s", exc)
            return
        with self._cond:
            busy = {self._group_ids.get(key[0]) for key in self._queues}
        for gid in self.results.watched() - open_groups - busy:
            self.results.unwatch(gid)

    def poll_once(self) -> int:
        """Fetch finished tasks over HTTP; the count of results committed."""
        assert self._ports is not None
        submitted: list[str] = []
        after = ""
        while page := self._ports.store.unfinished(self.name, after_id=after):
            submitted += [t.upstream_task_id for t in page if t.upstream_task_id]
            after = page[-1].task_id
        found: list[Completion] = []
        for i in range(0, len(submitted), STATUS_CHUNK):
            docs = self.web.batch_status(submitted[i : i + STATUS_CHUNK])
            for upstream_id, doc in docs.items():
                status = str(doc.get("status", "")).lower()
                if status not in ("success", "failed"):
                    continue
                completed = doc.get("completion_t")
                found.append(
                    Completion(
                        TaskState.SUCCESS if status == "success" else TaskState.FAILED,
                        str(doc.get("result") or doc.get("exception") or doc.get("reason") or ""),
                        upstream_task_id=upstream_id,
                        error_code="" if status == "success" else "RemoteExecutionError",
                        error_message="" if status == "success" else "task failed",
                        completed_at=float(completed) if completed else None,
                    )
                )
        if found:
            self._deliver(found).result()
        return len(found)
