"""Finding work again: task groups, their tasks and counts, as plain data.

Shared by Client, Executor.status() and the `fxgate` commands, so the shell
and Python see one shape. States are named in lower case, as get_task's
"status" names them. Every listing follows the daemon's page tokens to the
end (or to `limit`), so a caller never handles a token.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from client.connection import Connection
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract.states import TaskState

STATE_NAMES = tuple(s.name.lower() for s in TaskState)


def state_number(name: str) -> int:
    """The TaskState number of a lower- or upper-case state name; ValueError naming the choices."""
    try:
        return int(TaskState[name.upper()])
    except KeyError:
        raise ValueError(f"unknown state {name!r}; one of: {', '.join(STATE_NAMES)}") from None


def group_document(g: pb.TaskGroupSummary) -> dict[str, Any]:
    """One group: ids, where it runs, its label, times and its tasks counted by state.

    "tasks" names every state (0 when none); "total" is their sum; "last_seq"
    is the highest completion seq the counts include (a Watch after it sends
    exactly the completions they do not).
    """
    tasks = dict.fromkeys(STATE_NAMES, 0)
    for c in g.tasks:
        tasks[TaskState(c.state).name.lower()] = c.count
    return {
        "task_group_id": g.task_group_id,
        "endpoint_id": g.endpoint_id,
        "upstream": g.upstream,
        "label": g.label or None,
        "upstream_task_group_id": g.upstream_task_group_id or None,
        "created_at": g.created_at,
        "updated_at": g.updated_at,
        "tasks": tasks,
        "total": sum(tasks.values()),
        "last_seq": g.last_seq,
    }


def task_document(t: pb.TaskSummary) -> dict[str, Any]:
    """One task without its result: id, state, upstream id, times, error code and message."""
    return {
        "task_id": t.task_id,
        "status": TaskState(t.state).name.lower(),
        "upstream_task_id": t.upstream_task_id or None,
        "created_at": t.created_at,
        "completed_at": t.completed_at or None,
        "error_code": t.error_code or None,
        "error_message": t.error_message or None,
    }


def _limited(rows: Iterator[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for row in rows:
        if limit is not None and len(out) >= limit:
            break
        out.append(row)
    return out


def task_groups(conn: Connection, limit: int | None = None) -> list[dict[str, Any]]:
    """Every task group the daemon holds (or the newest `limit`), newest first."""

    def pages() -> Iterator[dict[str, Any]]:
        token = ""
        while True:
            request = pb.ListTaskGroupsRequest(page_token=token)
            reply = conn.call(
                lambda r=request: conn.stub.ListTaskGroups(r),  # type: ignore[misc]
                what="ListTaskGroups",
            )
            yield from (group_document(g) for g in reply.task_groups)
            token = reply.next_page_token
            if not token:
                return

    return _limited(pages(), limit)


def task_group(conn: Connection, task_group_id: str) -> dict[str, Any]:
    """One group's document (fxgate's id or the upstream's); RequestRefused if unknown."""
    request = pb.ListTaskGroupsRequest(task_group_id=task_group_id)
    reply = conn.call(lambda: conn.stub.ListTaskGroups(request), what="ListTaskGroups")
    return group_document(reply.task_groups[0])


def tasks(
    conn: Connection, task_group_id: str, state: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """A group's tasks by task id (only those in `state`, if given), without results."""
    number = state_number(state) if state else 0

    def pages() -> Iterator[dict[str, Any]]:
        token = ""
        while True:
            request = pb.ListTasksRequest(
                task_group_id=task_group_id,
                state=number,  # type: ignore[arg-type]
                page_token=token,
            )
            reply = conn.call(
                lambda r=request: conn.stub.ListTasks(r),  # type: ignore[misc]
                what="ListTasks",
            )
            yield from (task_document(t) for t in reply.tasks)
            token = reply.next_page_token
            if not token:
                return

    return _limited(pages(), limit)


def collect_garbage(conn: Connection, dry_run: bool) -> dict[str, Any]:
    """Run the daemon's retention sweep now (or only list what it would release)."""
    request = pb.CollectGarbageRequest(dry_run=dry_run)
    reply = conn.call(lambda: conn.stub.CollectGarbage(request), what="CollectGarbage")
    return {
        "dry_run": reply.dry_run,
        "cutoff": reply.cutoff,
        "task_group_ids": list(reply.task_group_ids),
        "tasks_released": reply.tasks_released,
    }
