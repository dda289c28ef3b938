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

cancel() is concurrent.futures' promise, kept across processes: True only if
the task never started, because it was never sent or because the daemon
withdrew it and confirmed CANCELLED; False once it started (running() is True
once the daemon said so) or finished. A running task is stopped with
Client.cancel, not here.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from client.errors import DeserializationError, MaxResultSizeExceeded, TaskExecutionFailed
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
_CANCELLED_STATES = frozenset(
    {concurrent.futures._base.CANCELLED, concurrent.futures._base.CANCELLED_AND_NOTIFIED}
)
# How long cancel() waits for a Submit under way to name the future's task.
SENDING_WAIT_S = 30.0
# Asks the daemon to withdraw a task not started (by task id): whether it is CANCELLED now.
Withdraw = Callable[[str], bool]


class ComputeFuture(concurrent.futures.Future[Any]):
    """A Future with the task's ids.

    task_id is fxgate's id, set once the daemon accepted the task and never
    changed, so a future (and a saved id) means the same task on every
    upstream. upstream_task_id is the Globus Compute task id, set as soon as
    the service assigned it (before the result), None on the local endpoint.
    Every call that takes a task id accepts either.
    """

    def __init__(self, task_id: str | None = None) -> None:
        super().__init__()
        self._condition = _SHARED_CONDITION  # see the module docstring
        self.task_id = task_id
        self.upstream_task_id: str | None = None
        # Set here, not later: an attribute added after __init__ makes Python give the
        # instance a dict of its own (640 bytes a future instead of 280).
        self._withdraw: Withdraw | None = None  # set by the Executor that sends the task
        self._sending = False  # in a Submit call now: its task id is not known yet

    def cancel(self) -> bool:
        """Withdraw the task if it has not started; True only then (see the module docstring).

        A task still queued in this process is dropped here; one the daemon
        accepted is withdrawn by the daemon, which must confirm it. A future
        made by hand from a task id (no Executor behind it) cancels only itself.
        """
        with self._condition:
            if self._state == concurrent.futures._base.FINISHED:
                return False
            if self._state in _CANCELLED_STATES:
                return True
            if self._sending:  # wait for the Submit to name the task (or to fail)
                self._condition.wait_for(lambda: not self._sending, SENDING_WAIT_S)
                if self._sending or self.done():
                    return self.cancelled()
            withdraw, task_id = self._withdraw, self.task_id
            if self._state == concurrent.futures._base.RUNNING:
                return False
        if withdraw is None or task_id is None:  # not handed to the daemon
            return self.cancel_here()
        if withdraw(task_id):
            self.cancel_here()
            return True
        return self.cancelled()  # a CANCELLED event may have come meanwhile

    def set_running_or_notify_cancel(self) -> bool:
        """As concurrent.futures', and False (not an error) when cancel() notified already,
        so the SDK's `fut.cancel(); fut.set_running_or_notify_cancel()` still works."""
        with self._condition:
            if self._state == concurrent.futures._base.CANCELLED_AND_NOTIFIED:
                return False
            return super().set_running_or_notify_cancel()

    def attach(self, withdraw: Withdraw) -> None:
        """Let cancel() ask the daemon to withdraw this future's task (see Withdraw)."""
        self._withdraw = withdraw

    def mark_running(self) -> None:
        """The daemon says the task started: running() is True from now on."""
        with self._condition:  # reentrant: set_running_or_notify_cancel takes it too
            if self._state == concurrent.futures._base.PENDING:
                self.set_running_or_notify_cancel()

    def cancel_here(self) -> bool:
        """Make this future cancelled, running or not (the daemon said CANCELLED); its
        callbacks run, and result() raises CancelledError. False if it had finished."""
        with self._condition:
            if self._state == concurrent.futures._base.FINISHED:
                return False
            if self._state in _CANCELLED_STATES:
                return True
            self._state = concurrent.futures._base.CANCELLED
            self._condition.notify_all()
        self._invoke_callbacks()  # type: ignore[attr-defined]  # concurrent.futures own
        self.set_running_or_notify_cancel()  # CANCELLED_AND_NOTIFIED: wait() and as_completed
        return True

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


def begin_send(futures: list[ComputeFuture]) -> list[ComputeFuture]:
    """Mark futures as being submitted; those cancelled first are left out (not sent).

    One lock for the batch (the Executor calls it per Submit, not per task).
    """
    with _SHARED_CONDITION:
        sending = [f for f in futures if f._state not in _CANCELLED_STATES]
        for f in sending:
            f._sending = True
    return sending


def end_send(
    futures: list[ComputeFuture], task_ids: list[str] | None, withdraw: Withdraw | None
) -> None:
    """The Submit answered (task_ids, in order) or failed (None); wakes cancel()s that wait."""
    with _SHARED_CONDITION:
        for i, f in enumerate(futures):
            if task_ids is not None:
                f.task_id = task_ids[i]
                f._withdraw = withdraw
            f._sending = False
        _SHARED_CONDITION.notify_all()


def remote_exception(event: pb.TaskEvent) -> BaseException:
    """The exception a failed task raises in the client: a TaskExecutionFailed, and more.

    ``except TaskExecutionFailed`` (what SDK scripts write) catches every task
    failure, and ``except ValueError`` catches one whose remote type could be
    rebuilt: the remote exception itself when its object was shipped back (the
    local upstream does), else the builtin (or MaxResultSizeExceeded) that the
    traceback's last line names, since a Globus Compute endpoint sends only the
    text. Such a failure is an instance of a subclass of both types, with the
    remote exception's arguments and attributes; its text is the remote
    traceback, as the SDK's.
    """
    text = event.data or event.error_message
    completed = str(event.completed_at) if event.completed_at else None
    remote: object = None
    if event.exception:
        try:
            remote = deserialize(event.exception)
        except Exception:  # noqa: BLE001 - fall back to the traceback text
            remote = None
    if not isinstance(remote, Exception):
        remote = _known_from_traceback(text)
    if isinstance(remote, Exception) and not isinstance(remote, TaskExecutionFailed):
        both = _failure_class(type(remote))
        if both is not None:
            return _rebuild(both, remote.args, vars(remote), text, completed)
    return TaskExecutionFailed(text, completed)


# Remote exception type -> its combined class (None: cannot be combined). Filled by
# whichever thread resolves a future first; two threads racing make equal classes.
_FAILURE_CLASSES: dict[type[Exception], type[TaskExecutionFailed] | None] = {}


def _failure_class(kind: type[Exception]) -> type[TaskExecutionFailed] | None:
    """A class that is both TaskExecutionFailed and `kind`, named as `kind` (None if impossible)."""
    if kind in _FAILURE_CLASSES:
        return _FAILURE_CLASSES[kind]
    both: type[TaskExecutionFailed] | None
    try:
        both = type(
            kind.__name__,
            (TaskExecutionFailed, kind),
            {"__reduce__": _reduce, "remote_type": kind},
        )
        both.__module__ = kind.__module__
        both.__qualname__ = kind.__qualname__
    except TypeError:  # e.g. a base whose layout cannot be combined
        both = None
    return _FAILURE_CLASSES.setdefault(kind, both)


def _reduce(self: TaskExecutionFailed) -> tuple[Any, ...]:
    """Pickle as the remote type plus the failure's fields (the combined class is made anew)."""
    kind: type[Exception] = getattr(type(self), "remote_type")  # noqa: B009
    return (_unpickle, (kind, self.args, dict(vars(self))))


def _unpickle(kind: type[Exception], args: tuple[Any, ...], fields: dict[str, Any]) -> Any:
    both = _failure_class(kind)
    assert both is not None  # it was made before, for the same kind
    return _rebuild(both, args, fields, fields["remote_data"], fields.get("completion_t"))


def _rebuild(
    both: type[TaskExecutionFailed],
    args: tuple[Any, ...],
    fields: dict[str, Any],
    text: str,
    completed: str | None,
) -> TaskExecutionFailed:
    """An instance of `both` without running either __init__ (the remote one may need more)."""
    failure = both.__new__(both, *args)
    failure.args = args
    failure.__dict__.update(fields)
    failure.remote_data = text
    failure.completion_t = completed or str(time.time())
    failure.task_details = fields.get("task_details")
    return failure


def _known_from_traceback(text: str) -> Exception | None:
    """ValueError("boom") from a traceback ending in "ValueError: boom"."""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("Traceback"):
        return None
    name, _, message = lines[-1].partition(": ")
    name = name.strip()
    if name.rpartition(".")[2] == "MaxResultSizeExceeded":
        sizes = [int(n) for n in re.findall(r"(\d+)B", message)]
        return MaxResultSizeExceeded(*sizes[:2]) if len(sizes) >= 2 else None
    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(message) if message else kind()
        except Exception:  # noqa: BLE001 - needs other arguments: keep the text
            return None
    return None


def resolve(
    future: ComputeFuture, event: pb.TaskEvent, allowed: frozenset[str] = frozenset()
) -> None:
    """Finish a future from a terminal task event (no-op if it is already done).

    A non-terminal event gives the future its upstream task id (SUBMITTED) or
    marks it running (RUNNING). `allowed`: the strategies a result may be read with
    (empty: any), the script's serializer's allowlist.
    """
    if event.upstream_task_id:
        future.upstream_task_id = event.upstream_task_id
    if event.state == pb.TASK_STATE_RUNNING:
        future.mark_running()
    if future.done() or event.state < pb.TASK_STATE_SUCCESS:
        return
    if event.state == pb.TASK_STATE_SUCCESS:
        try:
            value = deserialize(event.data, allowed)
        except Exception as exc:  # noqa: BLE001 - reported on the future
            err = DeserializationError(
                f"could not deserialize the result of {event.task_id}: {exc}"
            )
            err.__cause__ = exc
            _set(future, exception=err)
            return
        _set(future, result=value)
    elif event.state == pb.TASK_STATE_CANCELLED:
        future.cancel_here()
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
