"""Cancel and release: what the daemon can withdraw, what it can stop, and what it only reports.

A cancel answers per task, truthfully: a task still queued in the daemon is
withdrawn (CANCELLED, never started); a task that started is stopped where
its upstream can stop it (the local pool kills and replaces its worker, after
CANCELLED is committed, so it never runs again, even after a restart) and
left running, with the reason, where it cannot (the Globus Compute web
service has no cancel for a task it accepted). Releasing a group with
unfinished tasks is refused unless asked to cancel them first, so no future
is ever left waiting for a group that is gone.

Runs on the gRPC call threads (blocking: it waits for commits and for the
local pool to stop workers, at most STOP_WAIT_S).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fxgate_contract.states import CancelOutcome, TaskState
from gateway.errors import Conflict
from gateway.store.records import Completion, TaskEvent
from gateway.upstreams.base import Interruptible
from gateway.upstreams.cluster.upstream import ClusterUpstream

if TYPE_CHECKING:
    from gateway.core import Gateway

# How long a cancel waits for an upstream to stop running tasks (the local pool
# commits CANCELLED, then kills the worker: milliseconds, unless a task waits at
# a worker behind a running one, which is stopped only when it starts).
STOP_WAIT_S = 10.0
# Unfinished task ids a refused release names.
NAMED_IN_REFUSAL = 5
# Unfinished tasks cancelled per step of a release with cancel_unfinished.
RELEASE_PAGE = 5000


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What a cancel did to one task."""

    task_id: str
    outcome: CancelOutcome
    message: str = ""
    was_running: bool = False  # CANCELLED by stopping it, not withdrawn before its start


WITHDRAWN = "cancelled before it started"


def cancel(gw: Gateway, task_ids: Sequence[str], stop_running: bool) -> list[CancelResult]:
    """One result per distinct task named, in the order named; NotFound for an unknown id.

    stop_running False (a future's cancel()): only tasks not started are withdrawn.
    """
    events = gw.tasks(task_ids)  # NotFound for an unknown id, InvalidRequest for a bad one
    results: dict[str, CancelResult] = {}
    by_upstream: dict[str, list[TaskEvent]] = {}
    upstream_of: dict[str, str] = {}
    for e in events:
        if e.state.finished:
            results[e.task_id] = _finished(e)
            continue
        if e.group_id not in upstream_of:
            upstream_of[e.group_id] = gw.group(e.group_id).upstream
        by_upstream.setdefault(upstream_of[e.group_id], []).append(e)
    for name, unfinished in by_upstream.items():
        for r in _cancel_on(gw, name, [e.task_id for e in unfinished], stop_running):
            results[r.task_id] = r
    return [results[e.task_id] for e in events]


def _finished(e: TaskEvent) -> CancelResult:
    """A task that had its final state (CANCELLED included) before this cancel."""
    return CancelResult(
        e.task_id, CancelOutcome.ALREADY_FINISHED, f"already finished: {e.state.name}"
    )


def _cancel_on(
    gw: Gateway, name: str, task_ids: list[str], stop_running: bool
) -> list[CancelResult]:
    """Withdraw what the upstream still queues, stop what it can, report the rest."""
    upstream = gw.upstreams.get(name)
    if upstream is None:
        reason = f"the {name} upstream is not configured on this daemon"
        return _left_running(gw, task_ids, reason)
    withdrawn = upstream.cancel(task_ids)
    results = _store_withdrawn(gw, withdrawn)
    rest = [t for t in task_ids if t not in withdrawn]
    if not rest:
        return results
    if not stop_running:
        reason = "handed to its worker or service already; not_started_only leaves it running"
        return results + _left_running(gw, rest, reason)
    if not isinstance(upstream, Interruptible):
        return results + _left_running(gw, rest, _cannot_stop(name, upstream))
    try:
        stopped = upstream.stop_running(rest).result(timeout=STOP_WAIT_S)
    except FutureTimeout:
        stopped = set()
        late = rest
    else:
        late = []
        results += [
            CancelResult(t, CancelOutcome.CANCELLED, "stopped while running", True)
            for t in rest
            if t in stopped
        ]
    # Not stopped: finished meanwhile, or back in the queue (its worker was replaced).
    again = upstream.cancel([t for t in rest if t not in stopped])
    results += _store_withdrawn(gw, again)
    left = [t for t in rest if t not in stopped and t not in again]
    if late:
        return results + [
            CancelResult(
                t,
                CancelOutcome.UNKNOWN,
                "waiting at a worker behind another task: it is stopped when it starts "
                "(its watchers get CANCELLED then)",
            )
            for t in left
        ]
    return results + _left_running(gw, left, "its upstream did not stop it")


def _cannot_stop(name: str, upstream: object) -> str:
    """Why an upstream leaves a task it was handed to run, and what happens to it."""
    if isinstance(upstream, ClusterUpstream):
        return (
            f"cluster endpoint {name}: Globus Compute's engine cannot withdraw a task it "
            "holds (HTEX has no cancel); it runs, or waits at the engine's interchange, "
            "and its result will still arrive"
        )
    reason = f"the {name} upstream cannot stop a task it was handed"
    if name == "globus":
        reason += (
            " (the Globus Compute web service has no cancel): it runs, or waits, at its "
            "endpoint, and its result will still arrive"
        )
    return reason


def _store_withdrawn(gw: Gateway, task_ids: set[str]) -> list[CancelResult]:
    """Commit CANCELLED for tasks withdrawn before they started (watchers hear of it)."""
    if not task_ids:
        return []
    gw.complete(
        [
            Completion(
                TaskState.CANCELLED,
                "",
                task_id=t,
                error_code="Cancelled",
                error_message=WITHDRAWN,
            )
            for t in task_ids
        ]
    ).result()
    return [CancelResult(t, CancelOutcome.CANCELLED, WITHDRAWN) for t in sorted(task_ids)]


def _left_running(gw: Gateway, task_ids: list[str], reason: str) -> list[CancelResult]:
    """Tasks not cancelled: finished meanwhile, or still unfinished and left to run."""
    if not task_ids:
        return []
    now = {e.task_id: e for e in gw.store.tasks(task_ids)}
    out = []
    for t in task_ids:
        e = now.get(t)
        if e is not None and e.state.finished:
            out.append(_finished(e))
        else:
            out.append(CancelResult(t, CancelOutcome.RUNNING_CANNOT_STOP, reason))
    return out


def release(gw: Gateway, group_id: str, cancel_unfinished: bool) -> tuple[int, int]:
    """(tasks released, tasks cancelled first); Conflict if unfinished ones remain.

    With cancel_unfinished, every unfinished task is cancelled (running local
    ones stopped), and those an upstream cannot stop are marked CANCELLED as
    given up: their results, if any come, are no longer wanted. The group's
    watch streams then end, saying it was released.
    """
    group = gw.group(group_id)
    count, first = gw.store.unfinished_ids(group.id, limit=NAMED_IN_REFUSAL)
    if count and not cancel_unfinished:
        more = f" and {count - len(first)} more" if count > len(first) else ""
        raise Conflict(
            f"task group {group.id} has {count} unfinished tasks ({', '.join(first)}{more}); "
            "wait for them to finish, cancel them (Client.cancel), or release with "
            "cancel_unfinished=True (Client.release_task_group(..., cancel_unfinished=True)) "
            "to cancel them and release the group"
        )
    cancelled = 0
    while cancel_unfinished:
        _, page = gw.store.unfinished_ids(group.id, limit=RELEASE_PAGE)
        if not page:
            break
        results = cancel(gw, page, stop_running=True)
        cancelled += sum(r.outcome == CancelOutcome.CANCELLED for r in results)
        still_open = (CancelOutcome.RUNNING_CANNOT_STOP, CancelOutcome.UNKNOWN)
        given_up = [r.task_id for r in results if r.outcome in still_open]
        if given_up:
            gw.complete(
                [
                    Completion(
                        TaskState.CANCELLED,
                        "",
                        task_id=t,
                        error_code="Cancelled",
                        error_message="given up: its task group was released",
                    )
                    for t in given_up
                ]
            ).result()
            cancelled += len(given_up)
    released = gw.store.release(group.id, require_finished=True).result()
    gw.hub.end_group(group.id, f"task group {group.id} was released")
    return released, cancelled
