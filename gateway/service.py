"""The gRPC servicer: translates RPCs to calls on the core and errors to status codes.

This is the only module that knows gRPC status codes. A client's mistake ends
its own call with a clear code and message and touches nothing else; an
unexpected error is logged with its traceback and reported as INTERNAL.

The servicer runs on grpc's asyncio server: an open watch stream is a
coroutine, not a thread, so hundreds of watching clients cost little. Calls
that read or write the store run their blocking part on a small thread pool,
and a submit waits for its commit without holding a thread at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias, TypeVar

import grpc
from google.protobuf.message import DecodeError

from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from fxgate_contract.errors import FROM_DAEMON
from fxgate_contract.states import CancelOutcome
from gateway.core import Gateway, Status
from gateway.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    StoreUnavailable,
    TooLarge,
    UpstreamError,
)
from gateway.loglimit import throttled
from gateway.store.records import GroupSummary, NewTask, TaskEvent, TaskOptions

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

SERVICE = "fxgate.v1.Gateway"
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
# Watch messages carry many events; cap each message's size well below the
# channel limit (results may be up to 10 MB each).
EVENTS_PER_MESSAGE = 1000
BYTES_PER_MESSAGE = 8 * 1024 * 1024
# A status message stays far below the 8 KB of metadata a client accepts by
# default; messages name values through errors.shown(), this is the last guard.
MAX_DETAILS = 1000
# The largest seq any store holds: the column is a 32-bit INTEGER on PostgreSQL
# (64-bit on SQLite); a larger after_seq would fail the query as a store error.
MAX_SEQ = 2**31 - 1

CODES: list[tuple[type[Exception], grpc.StatusCode]] = [
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (TooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    (UpstreamError, grpc.StatusCode.FAILED_PRECONDITION),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
]


def _status_of(exc: Exception) -> grpc.StatusCode | None:
    for kind, code in CODES:
        if isinstance(exc, kind):
            return code
    return None


async def _abort(context: Context, exc: Exception, method: str) -> None:
    code = _status_of(exc)
    if code is None:
        log.error("%s failed unexpectedly", method, exc_info=exc)
        details = f"internal error in {method}: {exc}"
        await context.abort(grpc.StatusCode.INTERNAL, details[:MAX_DETAILS])
    details = str(exc)[:MAX_DETAILS]
    throttled(log).info("%s refused: %s", method, details)
    # Marks the daemon's own refusals, so a client can tell "the daemon says the store is
    # unavailable" from "no daemon answers", which carry the same code.
    context.set_trailing_metadata(((FROM_DAEMON, "1"),))
    await context.abort(code, details)


@dataclass(frozen=True)
class Unparsable:
    """Stands in for a request whose bytes are not the message the method takes."""

    error: str

    def refuse(self) -> NoReturn:
        raise InvalidRequest(f"request is not a valid message: {self.error}")


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return Unparsable(str(exc))

    return deserialize


class _Collected:
    """Takes the method handlers the generated code registers, to adjust them."""

    handlers: dict[str, grpc.RpcMethodHandler]

    def add_generic_rpc_handlers(self, _handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, _name: str, handlers: Any) -> None:
        self.handlers = handlers


class CallLimit:
    """At most `limit` calls served at once (max_calls); the excess is refused with a reason.

    grpc's own maximum_concurrent_rpcs refuses with "Concurrent RPC limit
    exceeded!", which names no setting. The refusal keeps those words, which
    the client library reads as "retry" (client/connection.py transient()).
    Only the server's event loop touches the count: no lock.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    async def refuse_if_full(self, context: Context) -> None:
        if self.active >= self.limit:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Concurrent RPC limit reached: the daemon is serving its limit of {self.limit} "
                "calls at once (max_calls; each open watch holds one); retry",
            )

    def unary(self, behavior: Callable[[Any, Context], Awaitable[Any]]) -> Any:
        async def limited(request: Any, context: Context) -> Any:
            await self.refuse_if_full(context)
            self.active += 1
            try:
                return await behavior(request, context)
            finally:
                self.active -= 1

        return limited

    def stream(self, behavior: Callable[[Any, Context], AsyncIterator[Any]]) -> Any:
        async def limited(request: Any, context: Context) -> AsyncIterator[Any]:
            await self.refuse_if_full(context)
            self.active += 1
            try:
                async for message in behavior(request, context):
                    yield message
            finally:
                self.active -= 1

        return limited


def _adjusted(handler: Any, limit: CallLimit) -> Any:
    """A method handler with a lenient parser and the call limit around its behaviour."""
    handler = handler._replace(request_deserializer=_lenient(handler.request_deserializer))
    if handler.unary_unary is not None:
        return handler._replace(unary_unary=limit.unary(handler.unary_unary))
    return handler._replace(unary_stream=limit.stream(handler.unary_stream))


def add_to_server(servicer: Servicer, server: grpc.aio.Server) -> None:
    """Register the service: unparsable requests refused, calls over max_calls refused.

    grpc itself answers UNKNOWN to bytes that are not a protobuf message,
    which reads like a fault of the daemon rather than the client's mistake.
    """
    collected = _Collected()
    pb_grpc.add_GatewayServicer_to_server(servicer, collected)  # type: ignore[no-untyped-call]
    limit = CallLimit(servicer.gw.settings.max_calls)
    handlers = {name: _adjusted(h, limit) for name, h in collected.handlers.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


def unary(method: F) -> F:
    """Map the core's exceptions to gRPC status codes for a unary RPC."""

    @functools.wraps(method)
    async def wrapper(self: Servicer, request: Any, context: Context) -> Any:
        try:
            if isinstance(request, Unparsable):
                request.refuse()
            return await method(self, request, context)
        except Exception as exc:  # noqa: BLE001 - this is the edge
            await _abort(context, exc, method.__name__)

    return wrapper  # type: ignore[return-value]


def event_message(e: TaskEvent) -> pb.TaskEvent:
    msg = pb.TaskEvent(
        task_id=e.task_id,
        state=int(e.state),  # type: ignore[arg-type]
        data=e.data,
        upstream_task_id=e.upstream_task_id,
        completed_at=e.completed_at,
        seq=e.seq,
    )
    if e.error_code or e.error_message or e.exception:  # a success sets none: skip them
        msg.error_code, msg.error_message, msg.exception = (
            e.error_code,
            e.error_message,
            e.exception,
        )
    return msg


def _messages(events: list[TaskEvent], replay_done: bool) -> Iterator[pb.WatchResponse]:
    """Split events into messages bounded by count and size."""
    chunk: list[pb.TaskEvent] = []
    size = 0
    for e in events:
        chunk.append(event_message(e))
        size += len(e.data) + len(e.exception) + 200
        if len(chunk) >= EVENTS_PER_MESSAGE or size >= BYTES_PER_MESSAGE:
            yield pb.WatchResponse(events=chunk)
            chunk, size = [], 0
    if chunk or replay_done:
        yield pb.WatchResponse(events=chunk, replay_done=replay_done)


class Servicer(pb_grpc.GatewayServicer):
    """The fxgate.v1.Gateway service."""

    def __init__(self, gateway: Gateway, blocking: Executor) -> None:
        self.gw = gateway
        self._blocking = blocking

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call of the core off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._blocking, fn, *args)

    @unary
    async def RegisterFunction(  # noqa: N802 - gRPC method name
        self, request: pb.RegisterFunctionRequest, context: Context
    ) -> pb.RegisterFunctionResponse:
        fid = await self._run(
            self.gw.register_function,
            request.function_name,
            request.function_code,
            request.description,
            request.metadata_json,
        )
        return pb.RegisterFunctionResponse(function_id=fid)

    @unary
    async def Submit(  # noqa: N802
        self, request: pb.SubmitRequest, context: Context
    ) -> pb.SubmitResponse:
        tasks = [NewTask(t.function_id, t.payload) for t in request.tasks]
        options = TaskOptions(
            request.user_endpoint_config_json,
            request.resource_specification_json,
            request.user_runtime_json,
        )
        committed = await self._run(
            self.gw.submit,
            request.task_group_id,
            request.endpoint_id,
            tasks,
            request.submit_id,
            list(request.result_serializers),
            options,
            request.label,
        )
        group_id, ids = await asyncio.wrap_future(committed)
        return pb.SubmitResponse(task_group_id=group_id, task_ids=ids)

    async def Watch(  # noqa: N802
        self, request: pb.WatchRequest, context: Context
    ) -> AsyncIterator[pb.WatchResponse]:
        try:
            if isinstance(request, Unparsable):
                request.refuse()
            if request.after_seq > MAX_SEQ:
                raise InvalidRequest(
                    f"after_seq {request.after_seq} is out of range (0 to {MAX_SEQ}; "
                    "a negative number sent as uint64 reads as one over 2**63)"
                )
            stream = self.gw.watch(request.task_group_id, request.after_seq, self._blocking)
            async with contextlib.aclosing(stream):  # unsubscribes when the client goes away
                async for events, replay_done in stream:
                    for message in _messages(events, replay_done):
                        yield message
        except Exception as exc:  # noqa: BLE001 - this is the edge
            await _abort(context, exc, "Watch")

    @unary
    async def GetTaskGroup(  # noqa: N802
        self, request: pb.GetTaskGroupRequest, context: Context
    ) -> pb.GetTaskGroupResponse:
        group, states, upstream_ids = await self._run(self.gw.task_states, request.task_group_id)
        return pb.GetTaskGroupResponse(
            task_group_id=group.id,
            endpoint_id=group.endpoint_id,
            upstream_task_group_id=group.upstream_group_id or "",
            tasks=[
                pb.TaskInfo(task_id=t, state=s, upstream_task_id=upstream_ids.get(t, ""))  # type: ignore[arg-type]
                for t, s in states
            ],
        )

    @unary
    async def GetTasks(  # noqa: N802
        self, request: pb.GetTasksRequest, context: Context
    ) -> pb.GetTasksResponse:
        events = await self._run(self.gw.tasks, list(request.task_ids), request.omit_unknown)
        return pb.GetTasksResponse(tasks=[event_message(e) for e in events])

    @unary
    async def Cancel(  # noqa: N802
        self, request: pb.CancelRequest, context: Context
    ) -> pb.CancelResponse:
        found = await self._run(
            self.gw.cancel_tasks, list(request.task_ids), not request.not_started_only
        )
        return pb.CancelResponse(
            cancelled_task_ids=[r.task_id for r in found if r.outcome == CancelOutcome.CANCELLED],
            outcomes=[
                pb.TaskCancel(
                    task_id=r.task_id,
                    outcome=int(r.outcome),  # type: ignore[arg-type]
                    message=r.message,
                    was_running=r.was_running,
                )
                for r in found
            ],
        )

    @unary
    async def ReleaseGroup(  # noqa: N802
        self, request: pb.ReleaseGroupRequest, context: Context
    ) -> pb.ReleaseGroupResponse:
        released, cancelled = await self._run(
            self.gw.release_group, request.task_group_id, request.cancel_unfinished
        )
        return pb.ReleaseGroupResponse(tasks_released=released, tasks_cancelled=cancelled)

    @unary
    async def ListTaskGroups(  # noqa: N802
        self, request: pb.ListTaskGroupsRequest, context: Context
    ) -> pb.ListTaskGroupsResponse:
        groups, token = await self._run(
            self.gw.list_groups, request.page_size, request.page_token, request.task_group_id
        )
        return pb.ListTaskGroupsResponse(
            task_groups=[group_summary(g) for g in groups], next_page_token=token
        )

    @unary
    async def ListTasks(  # noqa: N802
        self, request: pb.ListTasksRequest, context: Context
    ) -> pb.ListTasksResponse:
        group, tasks, token = await self._run(
            self.gw.list_tasks,
            request.task_group_id,
            request.state,
            request.page_size,
            request.page_token,
        )
        return pb.ListTasksResponse(
            task_group_id=group.id,
            tasks=[
                pb.TaskSummary(
                    task_id=t.task_id,
                    state=int(t.state),  # type: ignore[arg-type]
                    upstream_task_id=t.upstream_task_id,
                    created_at=t.created_at,
                    completed_at=t.completed_at,
                    error_code=t.error_code,
                    error_message=t.error_message,
                )
                for t in tasks
            ],
            next_page_token=token,
        )

    @unary
    async def CollectGarbage(  # noqa: N802
        self, request: pb.CollectGarbageRequest, context: Context
    ) -> pb.CollectGarbageResponse:
        cutoff, groups = await self._run(self.gw.collect_garbage, request.dry_run)
        return pb.CollectGarbageResponse(
            task_group_ids=sorted(groups),
            tasks_released=sum(groups.values()),
            cutoff=cutoff,
            dry_run=request.dry_run,
        )

    @unary
    async def Status(  # noqa: N802
        self, request: pb.StatusRequest, context: Context
    ) -> pb.StatusResponse:
        return status_response(await self._run(self.gw.status))

    @unary
    async def DescribeEndpoint(  # noqa: N802
        self, request: pb.DescribeEndpointRequest, context: Context
    ) -> pb.JsonDocument:
        doc = await self._run(self.gw.endpoint_document, request.endpoint_id, request.metadata)
        return pb.JsonDocument(json=json.dumps(doc))

    @unary
    async def ListEndpoints(  # noqa: N802
        self, request: pb.ListEndpointsRequest, context: Context
    ) -> pb.JsonDocument:
        return pb.JsonDocument(json=json.dumps(await self._run(self.gw.endpoints, request.role)))

    @unary
    async def DescribeFunction(  # noqa: N802
        self, request: pb.DescribeFunctionRequest, context: Context
    ) -> pb.JsonDocument:
        doc = await self._run(self.gw.function_document, request.function_id)
        return pb.JsonDocument(json=json.dumps(doc))


def group_summary(g: GroupSummary) -> pb.TaskGroupSummary:
    """A group as ListTaskGroups lists it."""
    return pb.TaskGroupSummary(
        task_group_id=g.group.id,
        endpoint_id=g.group.endpoint_id,
        upstream=g.group.upstream,
        label=g.group.label,
        tasks=[pb.StateCount(state=int(k), count=v) for k, v in sorted(g.counts.items())],  # type: ignore[arg-type]
        created_at=g.created_at,
        updated_at=g.updated_at,
        upstream_task_group_id=g.group.upstream_group_id or "",
        last_seq=g.last_seq,
    )


def status_response(s: Status) -> pb.StatusResponse:
    """The core's status as the Status call answers it (and the status socket, as a document)."""
    return pb.StatusResponse(
        version=s.version,
        uptime_s=s.uptime_s,
        task_groups=s.task_groups,
        tasks=[pb.StateCount(state=int(k), count=v) for k, v in sorted(s.tasks.items())],  # type: ignore[arg-type]
        upstreams=s.upstreams,
        quarantined_messages=s.quarantined,
        local_endpoint_id=s.local_endpoint_id,
        max_payload_bytes=s.max_payload_bytes,
        upstream_status=s.upstream_status,
        watchers=s.watchers,
    )
