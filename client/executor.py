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

from client import listing, registration
from client.client import Client
from client.connection import Connection
from client.errors import FxgateError, NotOffered, RequestRefused
from client.futures import ComputeFuture, begin_send, end_send
from client.watcher import GroupWatcher
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract.options import checked_option, option_json
from fxgate_contract.runtime import user_runtime_json
from fxgate_contract.serialize import pack_function, pack_payload
from fxgate_contract.serializer import Serializer, result_serializer_paths, serializer_of

log = logging.getLogger(__name__)

SUBMITTERS = 3
# Bytes of payload per Submit call (the daemon accepts 64 MB messages).
BATCH_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Options:
    """What a task tells its endpoint beside its function and payload, fixed at submit().

    Tasks whose options differ never share a Submit call.
    """

    user_endpoint_config: str  # JSON text, "" when absent
    resource_specification: str  # JSON text, "" when absent
    result_serializers: tuple[str, ...]


@dataclass(frozen=True, slots=True, eq=False)
class _Code:
    """A function given as code (submit): registered once per Executor, then sent by id.

    Compared by identity: _function_code hands out one object per function and strategy.
    """

    # name, code (pack_function with the code strategy current at submit), description
    # and metadata, as the SDK registers a function.
    request: pb.RegisterFunctionRequest


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
    options: _Options


class Executor(concurrent.futures.Executor):
    """A concurrent.futures.Executor whose tasks run on a Globus Compute or local endpoint."""

    def __init__(
        self,
        endpoint_id: str | uuid.UUID | None = None,
        client: Any = None,
        task_group_id: str | uuid.UUID | None = None,
        resource_specification: dict[str, Any] | None = None,
        user_endpoint_config: dict[str, Any] | None = None,
        label: str = "",
        batch_size: int = 1024,
        amqp_port: int | None = None,
        api_burst_limit: int = 4,
        api_burst_window_s: int = 16,
        serializer: Any = None,
        result_serializers: Iterable[Any] | None = None,
        *,
        address: str | None = None,
        **kwargs: Any,
    ) -> None:
        """The SDK's parameters in the SDK's order (docs/sdk-parity.md says what each does
        here); `address`: the daemon's, as the client resolves it by default."""
        for key in kwargs:  # funcX's funcx_client, container_id, batch_*: as the SDK, refused
            raise TypeError(f"'{key}' is an invalid argument for {type(self).__name__}")
        if client is not None and not isinstance(client, Client):
            raise NotOffered(
                "Executor(client=...) takes fxgate's client.Client: another client (the "
                "SDK's) carries its own Globus login, and tasks would run as the daemon's "
                "identity instead; pass client.Client(), or use the SDK's Executor"
            )
        # Checked at once, as the SDK does; each task takes the values current at its submit().
        self.resource_specification = resource_specification
        self.user_endpoint_config = user_endpoint_config
        # The SDK's Executor serializes with its Client's serializer unless given one.
        self.serializer = serializer or getattr(client, "fx_serializer", None)
        # The daemon batches Submit calls and holds the web-service client: the SDK's
        # burst limits are the daemon's business (kept for scripts that read them).
        self.api_burst_limit, self.api_burst_window_s = api_burst_limit, api_burst_window_s
        self.endpoint_id = endpoint_id
        self.task_group_id = task_group_id  # None: a new group (the setter)
        self.label = label
        self.batch_size = max(1, batch_size)
        self.result_serializers = result_serializers
        self._plain_options = _Options("", "", self._result_serializers)  # see _options()
        self.task_count_submitted = 0
        self._amqp_port = amqp_port
        # An fxgate Client given names the daemon, unless an address is given too.
        self._conn = Connection(address or getattr(client, "address", None))
        self._client: Client | None = client
        self._made_client = False  # the client property made _client: closed at shutdown
        self._queue: queue.SimpleQueue[_Queued | None] = queue.SimpleQueue()
        self._codes: dict[tuple[Callable[..., Any], str], _Code] = {}  # by (fn, strategy id)
        # register_function / register_source_code: function (or hash of source) -> id.
        # Written under _lock by the registering thread, read by submit() without it.
        self._registered: dict[Callable[..., Any] | int, str] = {}
        self._function_ids: dict[_Code, str] = {}  # the id the daemon gave each registration
        self._watchers: dict[str, GroupWatcher] = {}
        self._lock = threading.Lock()
        self._withdraw = self._withdraw_task  # one bound method, shared by every future
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

    @property
    def client(self) -> Client:
        """The Client for calls beside submit (the SDK's `Executor.client`): the one given,
        else one on this Executor's daemon with its serializer, made at first use."""
        with self._lock:
            if self._client is None:
                self._client = Client(address=self.address)
                self._client.fx_serializer = self._serializer_given
                self._made_client = True
            return self._client

    @property
    def endpoint_id(self) -> str | None:
        """Where submit() sends tasks: a Globus Compute endpoint UUID, "local", or None."""
        return self._endpoint_id

    @endpoint_id.setter
    def endpoint_id(self, value: str | uuid.UUID | None) -> None:
        self._endpoint_id = str(value) if value is not None else None

    @property
    def task_group_id(self) -> str:
        """The group later submits join; None sets a new one (the SDK's "a new group")."""
        return self._task_group_id

    @task_group_id.setter
    def task_group_id(self, value: str | uuid.UUID | None) -> None:
        # A new group id is chosen at once (as funcX did), so a script can save it
        # before its first task is even sent.
        self._task_group_id = str(value) if value else str(uuid.uuid4())

    @property
    def amqp_port(self) -> int | None:
        """Kept for SDK scripts and has no effect: the daemon holds the one broker
        connection, and its port is the daemon's configuration (the Globus upstream)."""
        return self._amqp_port

    @amqp_port.setter
    def amqp_port(self, value: int | None) -> None:
        self._amqp_port = value

    # ----------------------------------------------------------- options
    @property
    def resource_specification(self) -> dict[str, Any] | None:
        """Resource requirements each task asks of its endpoint (a JSON-serializable dict)."""
        return self._resource_specification

    @resource_specification.setter
    def resource_specification(self, value: dict[str, Any] | None) -> None:
        self._resource_specification = checked_option("resource_specification", value)

    @property
    def user_endpoint_config(self) -> dict[str, Any] | None:
        """Values for the endpoint's config template, as its administrators allow them."""
        return self._user_endpoint_config

    @user_endpoint_config.setter
    def user_endpoint_config(self, value: dict[str, Any] | None) -> None:
        self._user_endpoint_config = checked_option("user_endpoint_config", value)

    @property
    def serializer(self) -> Any:
        """What serializes function code and arguments: a Serializer or the SDK's own."""
        return self._serializer_given

    @serializer.setter
    def serializer(self, value: Any) -> None:
        self._serde: Serializer = serializer_of(value)
        self._serializer_given = value if value is not None else self._serde

    @property
    def result_serializers(self) -> list[str]:
        """Import paths of the strategies the endpoint tries, in order, on each result."""
        return list(self._result_serializers)

    @result_serializers.setter
    def result_serializers(self, value: Iterable[Any] | None) -> None:
        self._result_serializers = result_serializer_paths(value)

    def _allowed_strategies(self) -> frozenset[str]:
        """What may read results now: the serializer's allowlist (empty: any)."""
        return self._serde.allowed

    def _options(self) -> _Options:
        """The options a task submitted now carries, read at each submit(): a dict the
        script changes in place after setting it counts from the next task on."""
        if self._user_endpoint_config is None and self._resource_specification is None:
            # The usual case, built once per result_serializers (nothing to re-encode).
            if self._plain_options.result_serializers != self._result_serializers:
                self._plain_options = _Options("", "", self._result_serializers)
            return self._plain_options
        return _Options(
            option_json("user_endpoint_config", self._user_endpoint_config),
            option_json("resource_specification", self._resource_specification),
            self._result_serializers,
        )

    # ------------------------------------------------------------ submit
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> ComputeFuture:
        """Queue fn(*args, **kwargs) for the endpoint; returns its future at once."""
        if self._shutdown:
            raise RuntimeError("cannot submit to an Executor after shutdown")
        if not self.endpoint_id:
            raise ValueError("no endpoint_id set on this Executor")
        function = self._function_code(fn)
        payload = pack_payload(args, kwargs, self._serde.strategy_data)
        fut = ComputeFuture()
        queued = _Queued(
            fut, function, payload, self.task_group_id, self.endpoint_id, self._options()
        )
        self._queue.put(queued)
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
        payload = pack_payload(tuple(args or ()), kwargs or {}, self._serde.strategy_data)
        function = _Registered(function_id)
        queued = _Queued(
            fut, function, payload, self.task_group_id, self.endpoint_id, self._options()
        )
        self._queue.put(queued)
        return fut

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: Any = None,
        chunksize: int = 1,
    ) -> Any:
        raise NotImplementedError("map() is not supported; submit tasks and collect futures")

    # ---------------------------------------------------------- register
    def register_function(
        self, fn: Callable[..., Any], function_id: str | None = None, **func_register_kwargs: Any
    ) -> str:
        """Register fn now (or, with function_id, only remember that id for it); its id.

        submit(fn) then sends tasks by that id. As in the SDK, registering a
        function twice is a ValueError unless the same id is given again.
        """
        if self._shutdown:
            raise RuntimeError("cannot register a function with an Executor after shutdown")
        registration.check_options(func_register_kwargs)
        with self._lock:
            cached = self._registered.get(fn)
        if cached is not None:
            if function_id and str(function_id) == cached:
                return cached
            raise ValueError(f"Function already registered as function id: {cached}")
        if function_id:
            found = str(function_id)
        else:
            strategy = self._serde.strategy_code
            request = registration.function_request(
                fn,
                # funcX's function_name names it, as Client.register_function takes it
                str(
                    func_register_kwargs.get("function_name") or getattr(fn, "__name__", "function")
                ),
                pack_function(fn, strategy),
                strategy.identifier,
                func_register_kwargs.get("description"),
                func_register_kwargs.get("metadata"),
            )
            found = self._register_request(request)
        with self._lock:
            self._registered[fn] = found
        return found

    def register_source_code(
        self, source: str, function_name: str, **registration_kwargs: Any
    ) -> str:
        """Register source text defining function_name (the SDK's "st" strategy); its id.

        Run it with submit_to_registered_function. Registering the same source
        twice is a ValueError, as in the SDK.
        """
        if self._shutdown:
            raise RuntimeError("cannot register a function with an Executor after shutdown")
        registration.check_options(registration_kwargs)
        with self._lock:
            cached = self._registered.get(hash(source))
        if cached is not None:
            raise ValueError(f"Function already registered as function id: {cached}")
        request = registration.source_request(
            source,
            function_name,
            registration_kwargs.get("description"),
            registration_kwargs.get("metadata"),
        )
        found = self._register_request(request)
        with self._lock:
            self._registered[hash(source)] = found
        return found

    def get_worker_hardware_details(self) -> str:
        """A report on the hardware of a worker of this Executor's endpoint (blocks)."""
        name, source = registration.HARDWARE_REPORT_NAME, registration.HARDWARE_REPORT_SOURCE
        function_id = self._register_request(registration.source_request(source, name))
        fut = self.submit_to_registered_function(function_id, ("Compute Endpoint worker",))
        return str(fut.result())

    def _register_request(self, request: pb.RegisterFunctionRequest) -> str:
        response = self._conn.call_retrying(
            lambda: self._conn.stub.RegisterFunction(request), what="RegisterFunction"
        )
        return str(response.function_id)

    def _function_code(self, fn: Callable[..., Any]) -> _Code | _Registered:
        strategy = self._serde.strategy_code
        try:
            registered = self._registered.get(fn) if self._registered else None
            cached = self._codes.get((fn, strategy.identifier))
        except TypeError:  # an unhashable callable
            registered = cached = None
        if registered is not None:
            return _Registered(registered)
        if cached is None:
            name = getattr(fn, "__name__", type(fn).__name__)
            code = pack_function(fn, strategy)
            cached = _Code(registration.function_request(fn, name, code, strategy.identifier))
            try:
                self._codes[(fn, strategy.identifier)] = cached
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
            groups: dict[tuple[str, str, _Options], list[_Queued]] = {}
            sending = set(begin_send([item.future for item in batch]))  # not cancelled first
            for item in batch:
                if item.future in sending:
                    key = (item.task_group_id, item.endpoint_id, item.options)
                    groups.setdefault(key, []).append(item)
            for (group_id, endpoint_id, options), items in groups.items():
                try:
                    self._send(group_id, endpoint_id, options, items)
                except Exception as exc:  # noqa: BLE001 - the futures carry it
                    end_send([item.future for item in items], None, None)
                    for item in items:
                        try:
                            item.future.set_exception(exc)
                        except concurrent.futures.InvalidStateError:
                            pass  # done meanwhile
            if stop:
                return

    def _register(self, item: _Queued) -> str:
        """The function id of a queued task: given, known, or registered now."""
        function = item.function
        if isinstance(function, _Registered):
            return function.function_id
        with self._lock:
            known = self._function_ids.get(function)
        if known is not None:
            return known
        found = self._register_request(function.request)
        with self._lock:
            self._function_ids[function] = found
        return found

    def _send(
        self, group_id: str, endpoint_id: str, options: _Options, items: list[_Queued]
    ) -> None:
        request = pb.SubmitRequest(
            task_group_id=group_id,
            endpoint_id=endpoint_id,
            submit_id=str(uuid.uuid4()),  # the same id on every retry: accepted once
            result_serializers=options.result_serializers,
            user_endpoint_config_json=options.user_endpoint_config,
            resource_specification_json=options.resource_specification,
            user_runtime_json=user_runtime_json(),
            label=self.label,
            tasks=[pb.TaskSpec(function_id=self._register(i), payload=i.payload) for i in items],
        )
        watcher = self._watcher(group_id)
        watcher.begin_submit()
        futures = [i.future for i in items]
        try:
            response = self._conn.call_retrying(
                lambda: self._conn.stub.Submit(request), what="Submit"
            )
            if len(response.task_ids) != len(futures):
                raise RuntimeError("the daemon answered a Submit with the wrong number of ids")
            end_send(futures, list(response.task_ids), self._withdraw)
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
                watcher = self._watchers[group_id] = GroupWatcher(
                    self._conn, group_id, self._allowed_strategies
                )
            return watcher

    def status(self) -> dict[str, int]:
        """This Executor's task group, counted by state ({"accepted": n, ..., "success": n,
        "failed": n, "cancelled": n}, every state named); all 0 before its first task
        reached the daemon. Tasks still queued in this process are not counted."""
        try:
            counts: dict[str, int] = listing.task_group(self._conn, self.task_group_id)["tasks"]
        except RequestRefused as exc:
            if exc.code != "NOT_FOUND":
                raise
            counts = dict.fromkeys(listing.STATE_NAMES, 0)
        return counts

    # ------------------------------------------------------------ reload
    def reload_tasks(self, task_group_id: str | uuid.UUID | None = None) -> list[ComputeFuture]:
        """Futures for every task of the group; finished ones resolve at once.

        Works in any process: the daemon kept every result of the group. Given
        a group id (fxgate's or the Globus one), the Executor adopts that group,
        as the SDK's does: later submits join it (task_group_id becomes
        fxgate's id of it). Futures carry the upstream task ids known so far.
        """
        group_id = str(task_group_id or self.task_group_id or "")
        if not group_id:
            raise ValueError("reload_tasks needs a task_group_id")
        response = self._conn.call_retrying(
            lambda: self._conn.stub.GetTaskGroup(pb.GetTaskGroupRequest(task_group_id=group_id)),
            what="GetTaskGroup",
        )
        if task_group_id is not None:
            self.task_group_id = response.task_group_id
        watcher = self._watcher(response.task_group_id)
        futures = []
        for t in response.tasks:
            if not watcher.known(t.task_id):
                fut = ComputeFuture(t.task_id)
                fut.upstream_task_id = t.upstream_task_id or None
                fut.attach(self._withdraw)
                futures.append(fut)
        watcher.watch(futures, replay=True)
        return futures

    def _withdraw_task(self, task_id: str) -> bool:
        """A future's cancel(): ask the daemon to withdraw the task if it has not started."""
        request = pb.CancelRequest(task_ids=[task_id], not_started_only=True)
        try:
            response = self._conn.call(lambda: self._conn.stub.Cancel(request), what="Cancel")
        except (FxgateError, ValueError) as exc:  # cancel() answers, it does not raise
            # (ValueError: grpc's "closed channel", after shutdown)
            log.warning("could not cancel task %s: %s", task_id, exc)
            return False
        return task_id in response.cancelled_task_ids

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
            if self._made_client and self._client is not None:
                self._client.close()
        else:
            for w in watchers:
                w.finish_when_idle()

    def _cancel_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item.future.cancel()  # never sent: cancelled here, and its waiters told

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)


FuncXExecutor = Executor
