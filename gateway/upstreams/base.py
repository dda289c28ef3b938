"""The contract every upstream (local workers, Globus Compute) fulfils.

An upstream takes durable tasks and eventually reports each one finished
through the sink it was started with. It may run a task more than once
(after a daemon crash); the store keeps the first result of a task only.
What an upstream may use is all in UpstreamPorts, the store included only
through the few methods UpstreamStore names; tests/upstream_contract.py is
the one test suite every upstream passes.

Queued tasks do not all keep their payloads in memory: a queue of 70 tasks
of 8.8 MB held 829 MB. An upstream keeps payloads only within a byte budget
(PayloadBudget); beyond it a task waits with payload None, and the upstream
reads the payloads of a batch from the store just before it sends it
(with_payloads). Small tasks, the common case, never meet the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from gateway.store.records import Completion, FunctionRecord, GroupInfo, PendingTask

# Called by an upstream, on any of its own threads, with finished tasks. The
# future resolves once they are committed, to the completions that named no
# stored task; it resolves on the store's writer thread, so its callbacks run
# there: they must be short and never wait on the store. An upstream that must
# acknowledge results waits for it (on its own thread, never on the writer's).
ResultSink = Callable[[Sequence[Completion]], Future[list[Completion]]]
# Called by an upstream, on its own threads, to look up function code by id:
# (name, code); KeyError if unknown. Blocks on a store read the first time.
FunctionSource = Callable[[str], FunctionRecord]
# Called by an upstream, on its own threads, with task ids: their stored payloads
# (task id -> payload), for the tasks that still have one (a finished task's
# payload is gone). A blocking store read on the caller's thread.
PayloadSource = Callable[[Sequence[str]], dict[str, str]]
# Called by an upstream, on its own threads, with the ids it was given for tasks of
# one group (task id -> upstream task id). The future resolves on the store's writer
# thread once they are committed; the group's watchers hear of them then.
SubmittedSink = Callable[[str, dict[str, str]], Future[None]]
# Called by an upstream, on its own thread, with tasks that started (task id -> group id),
# where it knows starts (the local pool). The future resolves on the store's writer
# thread once committed; a task already finished is left as it is.
RunningSink = Callable[[dict[str, str]], Future[None]]
# Keeps unusable broker messages: (source, reason, body) rows. Called on the
# thread that received them; the future resolves on the store's writer thread.
QuarantineFn = Callable[[Sequence[tuple[str, str, bytes]]], Future[None]]


class UpstreamStore(Protocol):
    """The store methods an upstream may call, and no others (gateway.store.Store has them).

    Writes return futures that resolve on the store's writer thread once
    committed (their callbacks run there); reads block the calling thread.
    Any upstream thread may call any of them.
    """

    def quarantine(self, rows: Sequence[tuple[str, str, bytes]]) -> Future[None]:
        """Keep unusable broker messages: (source queue, reason, raw body)."""
        ...

    def groups_with_upstream_ids(self, upstream: str) -> list[GroupInfo]:
        """Groups of one upstream that have unfinished tasks (to resume consuming)."""
        ...

    def registration(self, function_id: str, upstream_key: str) -> str | None:
        """The upstream's id of a function registered there before, if any."""
        ...

    def save_registration(
        self, function_id: str, upstream_key: str, upstream_id: str
    ) -> Future[None]:
        """Remember the upstream's id of a function."""
        ...

    def group(self, group_id: str) -> GroupInfo | None:
        """One task group, with its upstream group id once it has one."""
        ...

    def set_upstream_group(self, group_id: str, upstream_group_id: str) -> Future[None]:
        """Record the upstream's id of a task group."""
        ...

    def mark_submitted(self, upstream_ids: dict[str, str]) -> Future[None]:
        """Record the upstream's task ids (task id -> upstream task id)."""
        ...

    def unfinished(self, upstream: str, after_id: str = "", limit: int = 5000) -> list[PendingTask]:
        """Unfinished tasks of one upstream's groups, in pages by task id, without payloads."""
        ...


@dataclass(frozen=True)
class UpstreamPorts:
    """Everything an upstream is given to work with; Gateway.start builds it.

    A test builds one around a real store and its own sink: an upstream that
    reaches nothing else can be tested alone.
    """

    sink: ResultSink
    functions: FunctionSource
    payloads: PayloadSource
    store: UpstreamStore
    submitted: SubmittedSink
    running: RunningSink | None = None  # None: starts are not recorded


# Bytes of payloads one upstream's queue keeps in memory, at most: about
# 160,000 tasks of 200 bytes, or three of the largest (10 MB).
QUEUED_PAYLOAD_BYTES = 32 * 1024 * 1024
# A sent task keeps a payload up to this size (copying small ones costs more than it saves).
KEEP_WHILE_RUNNING = 64 * 1024


class PayloadBudget:
    """Counts the payload bytes an upstream's queue holds; past the limit, tasks queue without.

    Not locked itself: the upstream calls it with its queue's lock held. Every
    task that enters the queue goes through admit() and every task that leaves
    it through release(), so `held` is exactly what the queue holds.
    """

    def __init__(self, limit: int = QUEUED_PAYLOAD_BYTES) -> None:
        self.limit = limit
        self.held = 0

    def admit(self, task: PendingTask) -> PendingTask:
        """The task as it may wait in the queue: with its payload while within the budget."""
        if task.payload is None:
            return task
        if self.held + len(task.payload) > self.limit:
            return replace(task, payload=None, payload_size=len(task.payload))
        self.held += len(task.payload)
        return task

    def release(self, task: PendingTask) -> None:
        """A task left the queue (sent, cancelled): its payload no longer counts."""
        if task.payload is not None:
            self.held -= len(task.payload)


def with_payloads(
    tasks: Sequence[PendingTask], payloads: PayloadSource
) -> list[tuple[PendingTask, str]]:
    """(task, payload) for each task still to run; one store read for those queued without.

    A task whose payload the store no longer has finished (or was cancelled or
    released) after it was queued: it is left out, not sent. A task returned
    holds no payload over KEEP_WHILE_RUNNING: the upstream keeps the task while
    it runs, the payload only until it is sent.
    """
    missing = [t.task_id for t in tasks if t.payload is None]
    found = payloads(missing) if missing else {}
    out: list[tuple[PendingTask, str]] = []
    for t in tasks:
        payload = t.payload
        if payload is None:
            payload = found.get(t.task_id)
            if payload is None:
                continue
        elif len(payload) > KEEP_WHILE_RUNNING:
            t = replace(t, payload=None, payload_size=len(payload))
        out.append((t, payload))
    return out


@dataclass(frozen=True)
class BrokerMeasures:
    """A result broker connection's counts since the daemon started, for the metrics."""

    connected: bool
    received: int  # result messages taken from the broker, redeliveries included
    acked: int  # messages acknowledged to the broker (each after its commit)
    reconnects: int  # connections made after the first


@dataclass(frozen=True)
class Measures:
    """One moment's view of an upstream's own work, for the metrics (gateway/metrics.py)."""

    queued: int  # tasks waiting in the daemon to be sent upstream
    in_flight: int  # sent and not yet back: local, at workers; Globus, in submit requests
    workers: int | None = None  # worker processes running (local)
    submitted: int | None = None  # tasks the service accepted since the daemon started (Globus)
    broker: BrokerMeasures | None = None  # its result broker connection (Globus)


@runtime_checkable
class Measured(Protocol):
    """An upstream that reports its queue and work for the metrics (every built-in one does)."""

    def measures(self) -> Measures:
        """A moment's counts; called on the metrics thread at each scrape, never blocks long."""
        ...


class Upstream(Protocol):
    """Where tasks run.

    start, enqueue, cancel, stop and describe are called on the daemon's
    threads (the gRPC call threads, the store's writer thread for enqueue
    after a commit, the main thread at start and stop); an upstream does its
    own work on threads it owns and ends them all in stop.
    """

    name: str

    def start(self, ports: UpstreamPorts) -> None:
        """Begin work; finished tasks go to ports.sink; payloads not queued come from
        ports.payloads. Unfinished tasks are handed over after it by enqueue."""

    def enqueue(self, tasks: Sequence[PendingTask]) -> None:
        """Take tasks that are committed in the store (new, or unfinished at restart).

        A task's payload may be None: it is read from `payloads` when the task is sent.
        Must not block: it may run on the store's writer thread.
        """

    def cancel(self, task_ids: Sequence[str]) -> set[str]:
        """Withdraw tasks that have not started; returns exactly the ids withdrawn."""

    def stop(self) -> None:
        """Stop taking work and release threads, processes and connections."""

    def describe(self) -> str:
        """One line on its health, for `fxgate status`."""


@runtime_checkable
class Interruptible(Protocol):
    """An upstream that can stop a task it started (the local pool); Globus cannot."""

    def stop_running(self, task_ids: Sequence[str]) -> Future[set[str]]:
        """Stop these tasks where they run; resolves to the ids stopped.

        For each task it holds, the upstream first has CANCELLED committed
        through its sink (so the task never runs again, even after a restart),
        then stops it. Ids it does not hold (finished, not yet started, or
        unknown) are left out. Any thread may call it; the future may resolve
        long after (a task waiting behind another at a worker is stopped when
        it starts).
        """
        ...


class ResultSource(Protocol):
    """A stream of result messages from a broker, one queue per upstream task group.

    Injected into an upstream (the Globus one: globus/results.py's ResultStream),
    so that a test may hand it a real broker's stream or a stub.
    """

    down_since: float | None  # monotonic time the broker became unreachable; None: connected
    received: int  # result messages received so far

    def start(
        self,
        deliver: ResultSink,
        quarantine: QuarantineFn,
        submits_in_flight: Callable[[], bool],
    ) -> None:
        """Begin consuming. `deliver` commits results and `quarantine` keeps unusable
        messages (both called on the stream's thread; a message is acknowledged once
        what it carried is committed); `submits_in_flight` says whether a result for
        an unknown task may yet become known (called on the stream's thread)."""

    def watch(self, upstream_group_id: str) -> None:
        """Consume this group's queue (idempotent; survives reconnects). Any thread."""

    def unwatch(self, upstream_group_id: str) -> None:
        """Stop consuming this group's queue. Any thread."""

    def watched(self) -> set[str]:
        """The groups whose queues are consumed. Any thread."""

    def measures(self) -> BrokerMeasures:
        """The connection's counts, for the metrics. Any thread."""

    def stop(self) -> None:
        """End the stream's thread and close its connection (also if never started)."""
