"""The gRPC servicer: translates RPCs to calls on the core and errors to status codes.

This is the only module that knows gRPC status codes. A client's mistake ends
its own call with a clear code and message and touches nothing else; an
unexpected error is logged with its traceback and reported as INTERNAL.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from client._proto import gateway_pb2 as pb
from client._proto import gateway_pb2_grpc as pb_grpc
from gateway.core import Gateway
from gateway.errors import InvalidRequest, NotFound, StoreUnavailable, TooLarge, UpstreamError
from gateway.store import NewTask, TaskEvent

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Watch messages carry many events; cap each message's size well below the
# channel limit (results may be up to 10 MB each).
EVENTS_PER_MESSAGE = 1000
BYTES_PER_MESSAGE = 8 * 1024 * 1024

CODES: list[tuple[type[Exception], grpc.StatusCode]] = [
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (TooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    (UpstreamError, grpc.StatusCode.FAILED_PRECONDITION),
]


def _status_of(exc: Exception) -> grpc.StatusCode | None:
    for kind, code in CODES:
        if isinstance(exc, kind):
            return code
    return None


def _abort(context: grpc.ServicerContext, exc: Exception, method: str) -> None:
    code = _status_of(exc)
    if code is None:
        log.exception("%s failed unexpectedly", method)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}: {exc}")
    log.info("%s refused: %s", method, exc)
    context.abort(code, str(exc))


def unary(method: F) -> F:
    """Map the core's exceptions to gRPC status codes for a unary RPC."""

    @functools.wraps(method)
    def wrapper(self: Servicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001 - this is the edge
            _abort(context, exc, method.__name__)

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

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    @unary
    def RegisterFunction(  # noqa: N802 - gRPC method name
        self, request: pb.RegisterFunctionRequest, context: grpc.ServicerContext
    ) -> pb.RegisterFunctionResponse:
        fid = self.gw.register_function(request.function_name, request.function_code)
        return pb.RegisterFunctionResponse(function_id=fid)

    @unary
    def Submit(  # noqa: N802
        self, request: pb.SubmitRequest, context: grpc.ServicerContext
    ) -> pb.SubmitResponse:
        tasks = [NewTask(t.function_id, t.payload) for t in request.tasks]
        group_id, ids = self.gw.submit(
            request.task_group_id,
            request.endpoint_id,
            tasks,
            request.submit_id,
            list(request.result_serializers),
        )
        return pb.SubmitResponse(task_group_id=group_id, task_ids=ids)

    def Watch(  # noqa: N802
        self, request: pb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchResponse]:
        try:
            stream = self.gw.watch(request.task_group_id, request.after_seq, context.is_active)
            for events, replay_done in stream:
                yield from _messages(events, replay_done)
        except Exception as exc:  # noqa: BLE001 - this is the edge
            _abort(context, exc, "Watch")

    @unary
    def GetTaskGroup(  # noqa: N802
        self, request: pb.GetTaskGroupRequest, context: grpc.ServicerContext
    ) -> pb.GetTaskGroupResponse:
        group, states = self.gw.task_states(request.task_group_id)
        return pb.GetTaskGroupResponse(
            task_group_id=group.id,
            endpoint_id=group.endpoint_id,
            upstream_task_group_id=group.upstream_group_id or "",
            tasks=[pb.TaskInfo(task_id=t, state=s) for t, s in states],  # type: ignore[arg-type]
        )

    @unary
    def GetTasks(  # noqa: N802
        self, request: pb.GetTasksRequest, context: grpc.ServicerContext
    ) -> pb.GetTasksResponse:
        events = self.gw.tasks(list(request.task_ids))
        return pb.GetTasksResponse(tasks=[event_message(e) for e in events])

    @unary
    def Cancel(  # noqa: N802
        self, request: pb.CancelRequest, context: grpc.ServicerContext
    ) -> pb.CancelResponse:
        return pb.CancelResponse(cancelled_task_ids=self.gw.cancel(list(request.task_ids)))

    @unary
    def ReleaseGroup(  # noqa: N802
        self, request: pb.ReleaseGroupRequest, context: grpc.ServicerContext
    ) -> pb.ReleaseGroupResponse:
        return pb.ReleaseGroupResponse(tasks_released=self.gw.release(request.task_group_id))

    @unary
    def Status(  # noqa: N802
        self, request: pb.StatusRequest, context: grpc.ServicerContext
    ) -> pb.StatusResponse:
        s = self.gw.status()
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
