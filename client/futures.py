"""Futures of remote tasks, and how a task event from the daemon resolves one.

A future is rebuildable from its task id alone: any process that knows a task
group id can make futures for its tasks and have them resolved.

A script may hold a future for each of 100,000 tasks. concurrent.futures gives
every Future a Condition of its own (a lock, a deque and bound methods: about
1.3 of its 1.6 KB); ComputeFutures share one per process instead (0.3 KB each).
The Condition only guards state changes, which are brief, and wakes threads
blocked in result() or exception(); with one shared Condition a wake-up may be
meant for another future, so those two wait until their own future is done.
concurrent.futures.wait() and as_completed() wait on events of their own and
work unchanged.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import logging
import threading
from typing import Any

from client.errors import DeserializationError, TaskExecutionFailed
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract.serialize import deserialize

log = logging.getLogger(__name__)

_SHARED_CONDITION = threading.Condition()
# Terminal states: once a future is in one it never leaves, so seeing it without
# the lock is enough to skip the wait.
_DONE_STATES = frozenset(
    {
        concurrent.futures._base.FINISHED,
        concurrent.futures._base.CANCELLED,
        concurrent.futures._base.CANCELLED_AND_NOTIFIED,
    }
)


class ComputeFuture(concurrent.futures.Future[Any]):
    """A Future with the task's id (fxgate's; known as soon as the daemon accepted it)."""

    def __init__(self, task_id: str | None = None) -> None:
        super().__init__()
        self._condition = _SHARED_CONDITION  # see the module docstring
        self.task_id = task_id
        self.upstream_task_id: str | None = None

    def result(self, timeout: float | None = None) -> Any:
        if self._state not in _DONE_STATES:
            self._wait_done(timeout)
        return super().result(timeout=0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state not in _DONE_STATES:
            self._wait_done(timeout)
        return super().exception(timeout=0)

    def _wait_done(self, timeout: float | None) -> None:
        """Until this future is done or the timeout passed, whatever else wakes the Condition."""
        with self._condition:
            self._condition.wait_for(self.done, timeout)


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
