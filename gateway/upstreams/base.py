"""The contract every upstream (local workers, Globus Compute) fulfils.

An upstream takes durable tasks and eventually reports each one finished
through the sink it was started with. It may run a task more than once
(after a daemon crash); the store keeps the first result of a task only.

Queued tasks do not all keep their payloads in memory: a queue of 70 tasks
of 8.8 MB held 829 MB. An upstream keeps payloads only within a byte budget
(PayloadBudget); beyond it a task waits with payload None, and the upstream
reads the payloads of a batch from the store just before it sends it
(with_payloads). Small tasks, the common case, never meet the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import Protocol

from gateway.store.records import Completion, PendingTask

# Called by an upstream with finished tasks; the future resolves once they are
# committed (an upstream that must acknowledge results waits for it), to the
# completions that named no stored task.
ResultSink = Callable[[Sequence[Completion]], Future[list[Completion]]]
# Called by an upstream to look up function code by id: (name, code).
FunctionSource = Callable[[str], tuple[str, str]]
# Called by an upstream with task ids: their stored payloads (task id -> payload),
# for the tasks that still have one (a finished task's payload is gone).
PayloadSource = Callable[[Sequence[str]], dict[str, str]]

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


class Upstream(Protocol):
    """Where tasks run."""

    name: str

    def start(self, sink: ResultSink, functions: FunctionSource, payloads: PayloadSource) -> None:
        """Begin work; finished tasks go to sink; payloads not queued come from `payloads`."""

    def enqueue(self, tasks: Sequence[PendingTask]) -> None:
        """Take tasks that are committed in the store (new, or unfinished at restart).

        A task's payload may be None: it is read from `payloads` when the task is sent.
        """

    def cancel(self, task_ids: Sequence[str]) -> set[str]:
        """Withdraw tasks that have not started; returns the ids withdrawn."""

    def stop(self) -> None:
        """Stop taking work and release processes and connections."""

    def describe(self) -> str:
        """One line on its health, for `fxgate status`."""
