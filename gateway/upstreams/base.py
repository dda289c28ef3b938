"""The contract every upstream (local workers, Globus Compute) fulfils.

An upstream takes durable tasks and eventually reports each one finished
through the sink it was started with. It may run a task more than once
(after a daemon crash); the store keeps the first result of a task only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Protocol

from gateway.store import Completion, PendingTask

# Called by an upstream with finished tasks; the future resolves once they are
# committed (an upstream that must acknowledge results waits for it), to the
# completions that named no stored task.
ResultSink = Callable[[Sequence[Completion]], Future[list[Completion]]]
# Called by an upstream to look up function code by id: (name, code).
FunctionSource = Callable[[str], tuple[str, str]]


class Upstream(Protocol):
    """Where tasks run."""

    name: str

    def start(self, sink: ResultSink, functions: FunctionSource) -> None:
        """Begin work; finished tasks go to sink."""

    def enqueue(self, tasks: Sequence[PendingTask]) -> None:
        """Take tasks that are committed in the store (new, or unfinished at restart)."""

    def cancel(self, task_ids: Sequence[str]) -> set[str]:
        """Withdraw tasks that have not started; returns the ids withdrawn."""

    def stop(self) -> None:
        """Stop taking work and release processes and connections."""

    def describe(self) -> str:
        """One line on its health, for `fxgate status`."""
