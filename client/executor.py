"""The Executor: submit Python functions to an endpoint through the fxgate daemon.

It mirrors the Globus Compute SDK's Executor (and funcX's FuncXExecutor): a
thread coalesces submits into batches, one stream per task group resolves
futures. Unlike the SDK, it holds no broker connection: the daemon does, and
it keeps every result of the group until this or a later process collects it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from client.connection import Connection
from client.errors import refuse_uncarried
from client.futures import ComputeFuture
from client.watcher import GroupWatcher
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract.serialize import pack_function, pack_payload

log = logging.getLogger(__name__)

SUBMITTERS = 3
# Bytes of payload per Submit call (the daemon accepts 64 MB messages).
BATCH_BYTES = 16 * 1024 * 1024
# Keyword arguments of the SDK's Executor that have no meaning here.
IGNORED_SDK_KWARGS = frozenset(
    {
        "client",
        "funcx_client",
        "container_id",
        "amqp_port",
        "api_burst_limit",
        "api_burst_window_s",
        "batch_interval",
        "batch_enabled",
        "serializer",
        "resource_specification",
        "user_endpoint_config",
    }
)


@dataclass(frozen=True, slots=True)
class _Code:
    """A function given as code (submit): registered once per Executor, then sent by id."""

    name: str
    code: str  # pack_function(fn)


@dataclass(frozen=True, slots=True)
class _Registered:
    """A function registered beforehand (Client.register_function): sent by its id as it is."""

    function_id: str


@dataclass
class _Queued:
    future: ComputeFuture
    function: _Code | _Registered
    payload: str
    task_group_id: str
    endpoint_id: str


class Executor(concurrent.futures.Executor):
    """A concurrent.futures.Executor whose tasks run on a Globus Compute or local endpoint."""

    def __init__(
        self,
        endpoint_id: str | uuid.UUID | None = None,
        task_group_id: str | uuid.UUID | None = None,
        address: str | None = None,
        batch_size: int = 1024,
        label: str = "",
        result_serializers: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        unknown = set(kwargs) - IGNORED_SDK_KWARGS
        if unknown:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(unknown))}")
        refuse_uncarried("Executor", kwargs)
        self.endpoint_id = str(endpoint_id) if endpoint_id is not None else None
        # A new group id is chosen here (as funcX did), so a script can save it
        # before its first task is even sent.
        self.task_group_id = str(task_group_id) if task_group_id else str(uuid.uuid4())
        self.label = label
        self.batch_size = max(1, batch_size)
        self.result_serializers = list(result_serializers or [])
        self.task_count_submitted = 0
        self._conn = Connection(address)
        self._queue: queue.SimpleQueue[_Queued | None] = queue.SimpleQueue()
        self._codes: dict[Callable[..., Any], _Code] = {}
        self._function_ids: dict[str, str] = {}  # _Code.code -> the id the daemon gave it
        self._watchers: dict[str, GroupWatcher] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._shutdown = False
        # A few submitter threads keep several Submit calls in flight, so the
        # daemon's group commit overlaps with this process building the next batch.
        self._submitters = [
            threading.Thread(target=self._submit_loop, name=f"fxgate-submit-{n}", daemon=True)
            for n in range(SUBMITTERS)
        ]
        for thread in self._submitters:
            thread.start()

    @property
    def address(self) -> str:
        return self._conn.address

    # ------------------------------------------------------------ submit
    # SDK options this fxgate does not carry yet: readable (None), refused when set.
    @property
    def resource_specification(self) -> None:
        return None

    @resource_specification.setter
    def resource_specification(self, value: object) -> None:
        refuse_uncarried("Executor", {"resource_specification": value})

    @property
    def user_endpoint_config(self) -> None:
        return None

    @user_endpoint_config.setter
    def user_endpoint_config(self, value: object) -> None:
        refuse_uncarried("Executor", {"user_endpoint_config": value})

    @property
    def serializer(self) -> None:
        return None

    @serializer.setter
    def serializer(self, value: object) -> None:
        refuse_uncarried("Executor", {"serializer": value})

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> ComputeFuture:
        """Queue fn(*args, **kwargs) for the endpoint; returns its future at once."""
        if self._shutdown:
            raise RuntimeError("cannot submit to an Executor after shutdown")
        if not self.endpoint_id:
            raise ValueError("no endpoint_id set on this Executor")
        function = self._function_code(fn)
        payload = pack_payload(args, kwargs)
        fut = ComputeFuture()
        self._queue.put(_Queued(fut, function, payload, self.task_group_id, self.endpoint_id))
        return fut

    def submit_to_registered_function(
        self,
        function_id: str,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> ComputeFuture:
        """Submit by the id that Client.register_function returned."""
        if self._shutdown:
            raise RuntimeError("cannot submit to an Executor after shutdown")
        if not self.endpoint_id:
            raise ValueError("no endpoint_id set on this Executor")
        fut = ComputeFuture()
        payload = pack_payload(tuple(args or ()), kwargs or {})
        function = _Registered(function_id)
        self._queue.put(_Queued(fut, function, payload, self.task_group_id, self.endpoint_id))
        return fut

    def map(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("map() is not supported; submit tasks and collect futures")

    def _function_code(self, fn: Callable[..., Any]) -> _Code:
        try:
            cached = self._codes.get(fn)
        except TypeError:  # an unhashable callable
            cached = None
        if cached is None:
            cached = _Code(getattr(fn, "__name__", type(fn).__name__), pack_function(fn))
            try:
                self._codes[fn] = cached
            except TypeError:
                pass
        return cached

    # --------------------------------------------------------- submitter
    def _take_batch(self) -> tuple[list[_Queued], bool]:
        """Everything queued, up to batch_size tasks; and whether shutdown was asked."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch, size = [first], len(first.payload)
        while len(batch) < self.batch_size and size < BATCH_BYTES:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
            size += len(item.payload)
        return batch, False

    def _submit_loop(self) -> None:
        while True:
            batch, stop = self._take_batch()
            groups: dict[tuple[str, str], list[_Queued]] = {}
            for item in batch:
                if not item.future.cancelled():
                    groups.setdefault((item.task_group_id, item.endpoint_id), []).append(item)
            for (group_id, endpoint_id), items in groups.items():
                try:
                    self._send(group_id, endpoint_id, items)
                except Exception as exc:  # noqa: BLE001 - the futures carry it
                    for item in items:
                        if not item.future.done():
                            item.future.set_exception(exc)
            if stop:
                return

    def _register(self, item: _Queued) -> str:
        """The function id of a queued task: given, known, or registered now."""
        function = item.function
        if isinstance(function, _Registered):
            return function.function_id
        with self._lock:
            known = self._function_ids.get(function.code)
        if known is not None:
            return known
        response = self._conn.call_retrying(
            lambda: self._conn.stub.RegisterFunction(
                pb.RegisterFunctionRequest(function_name=function.name, function_code=function.code)
            ),
            what="RegisterFunction",
        )
        with self._lock:
            self._function_ids[function.code] = response.function_id
        return str(response.function_id)

    def _send(self, group_id: str, endpoint_id: str, items: list[_Queued]) -> None:
        request = pb.SubmitRequest(
            task_group_id=group_id,
            endpoint_id=endpoint_id,
            submit_id=str(uuid.uuid4()),  # the same id on every retry: accepted once
            result_serializers=self.result_serializers,
            tasks=[pb.TaskSpec(function_id=self._register(i), payload=i.payload) for i in items],
        )
        watcher = self._watcher(group_id)
        watcher.begin_submit()
        futures = [i.future for i in items]
        try:
            response = self._conn.call_retrying(
                lambda: self._conn.stub.Submit(request), what="Submit"
            )
            for fut, task_id in zip(futures, response.task_ids, strict=True):
                fut.task_id = task_id
        except BaseException:
            watcher.end_submit([])
            raise
        watcher.end_submit(futures)
        with self._lock:
            self.task_count_submitted += len(futures)

    def _watcher(self, group_id: str) -> GroupWatcher:
        with self._lock:
            watcher = self._watchers.get(group_id)
            if watcher is None:
                watcher = self._watchers[group_id] = GroupWatcher(self._conn, group_id)
            return watcher

    # ------------------------------------------------------------ reload
    def reload_tasks(self, task_group_id: str | uuid.UUID | None = None) -> list[ComputeFuture]:
        """Futures for every task of the group; finished ones resolve at once.

        Works in any process: the daemon kept every result of the group.
        """
        group_id = str(task_group_id or self.task_group_id or "")
        if not group_id:
            raise ValueError("reload_tasks needs a task_group_id")
        response = self._conn.call_retrying(
            lambda: self._conn.stub.GetTaskGroup(pb.GetTaskGroupRequest(task_group_id=group_id)),
            what="GetTaskGroup",
        )
        watcher = self._watcher(group_id)
        futures = [ComputeFuture(t.task_id) for t in response.tasks if not watcher.known(t.task_id)]
        watcher.watch(futures, replay=True)
        return futures

    # ---------------------------------------------------------- shutdown
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Send what is queued (or cancel it), then optionally wait for every result."""
        if not self._shutdown:
            self._shutdown = True
            if cancel_futures:
                self._cancel_queued()
            for _ in self._submitters:
                self._queue.put(None)
        if wait:
            for thread in self._submitters:
                thread.join()
        with self._lock:
            watchers = list(self._watchers.values())
        if wait:
            pending = [f for w in watchers for f in w.open_futures()]
            concurrent.futures.wait(pending)
            for w in watchers:
                w.stop()
            self._conn.close()
        else:
            for w in watchers:
                w.finish_when_idle()

    def _cancel_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None and item.future.cancel():
                item.future.set_running_or_notify_cancel()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)


FuncXExecutor = Executor
