"""Futures of remote tasks, and how a task event from the daemon resolves one.

A future is rebuildable from its task id alone: any process that knows a task
group id can make futures for its tasks and have them resolved.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import logging
from typing import Any

from client._proto import gateway_pb2 as pb
from client.errors import DeserializationError, TaskExecutionFailed
from client.serialize import deserialize

log = logging.getLogger(__name__)


class ComputeFuture(concurrent.futures.Future[Any]):
    """A Future with the task's id (fxgate's; known as soon as the daemon accepted it)."""

    def __init__(self, task_id: str | None = None) -> None:
        super().__init__()
        self.task_id = task_id
        self.upstream_task_id: str | None = None


FuncXFuture = ComputeFuture


def remote_exception(event: pb.TaskEvent) -> BaseException:
    """The exception a failed task raises in the client.

    The remote exception itself when its object was shipped back (the local
    upstream does), else one rebuilt from the traceback's last line when it
    names a builtin exception (a Globus Compute endpoint sends only the
    text), each with the remote traceback attached as its cause; otherwise
    TaskExecutionFailed carrying the traceback text.
    """
    failure = TaskExecutionFailed(event.data or event.error_message, str(event.completed_at))
    exc: object = None
    if event.exception:
        try:
            exc = deserialize(event.exception)
        except Exception:  # noqa: BLE001 - fall back to the traceback text
            exc = None
    if not isinstance(exc, BaseException):
        exc = _builtin_from_traceback(event.data)
    if isinstance(exc, BaseException):
        exc.__cause__ = failure
        return exc
    return failure


def _builtin_from_traceback(text: str) -> BaseException | None:
    """ValueError("boom") from a traceback ending in "ValueError: boom"."""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("Traceback"):
        return None
    name, _, message = lines[-1].partition(": ")
    kind = getattr(builtins, name.strip(), None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(message) if message else kind()
        except Exception:  # noqa: BLE001 - needs other arguments: keep the text
            return None
    return None


def resolve(future: ComputeFuture, event: pb.TaskEvent) -> None:
    """Finish a future from a terminal task event (no-op if it is already done)."""
    if future.done():
        return
    if event.upstream_task_id:
        future.upstream_task_id = event.upstream_task_id
    if event.state == pb.TASK_STATE_SUCCESS:
        try:
            value = deserialize(event.data)
        except Exception as exc:  # noqa: BLE001 - reported on the future
            err = DeserializationError(
                f"could not deserialize the result of {event.task_id}: {exc}"
            )
            err.__cause__ = exc
            _set(future, exception=err)
            return
        _set(future, result=value)
    elif event.state == pb.TASK_STATE_CANCELLED:
        if future.cancel():
            future.set_running_or_notify_cancel()
    else:
        _set(future, exception=remote_exception(event))


def _set(
    future: ComputeFuture, *, result: Any = None, exception: BaseException | None = None
) -> None:
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled by the user meanwhile
