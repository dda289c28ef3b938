"""The low-level client: register functions, run batches, fetch results by task id.

It mirrors the batch API of the Globus Compute SDK's Client and of funcX's
FuncXClient (both call shapes of Batch.add and batch_run are accepted), so
scripts written for either run with only the import changed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from client import listing, registration
from client.connection import Connection
from client.errors import NotOffered, TaskPending
from client.futures import ComputeFuture, resolve
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract.options import checked_option
from fxgate_contract.runtime import user_runtime
from fxgate_contract.serialize import pack_function, pack_payload
from fxgate_contract.serializer import (
    Serializer,
    result_serializer_paths,
    serializer_from,
    serializer_of,
)
from fxgate_contract.states import CancelOutcome, TaskState
from fxgate_contract.status import status_document

log = logging.getLogger(__name__)


class Batch:
    """Tasks to submit in one call; an endpoint per task (funcX) or per run (SDK).

    Its arguments are the SDK's, in the SDK's order; every task of a batch
    carries its options (resource_specification, user_endpoint_config,
    result_serializers) and user_runtime, and prepare() is the SDK's v3 body.
    """

    def __init__(
        self,
        task_group_id: str | uuid.UUID | None = None,
        resource_specification: dict[str, Any] | None = None,
        user_endpoint_config: dict[str, Any] | None = None,
        request_queue: bool = False,
        serializer: Any = None,
        user_runtime: Any = None,
        result_serializers: Iterable[Any] | None = None,
    ):
        self.task_group_id = str(task_group_id) if task_group_id else None
        self.resource_specification = checked_option(
            "resource_specification", resource_specification
        )
        self.user_endpoint_config = checked_option("user_endpoint_config", user_endpoint_config)
        self.request_queue = request_queue
        self._serde = serializer_of(serializer)
        # The SDK's UserRuntime dataclass or its dict form (create_user_runtime / user_runtime()).
        self.user_runtime: dict[str, Any] | None = (
            dataclasses.asdict(user_runtime)
            if dataclasses.is_dataclass(user_runtime) and not isinstance(user_runtime, type)
            else user_runtime
        )
        self.result_serializers = list(result_serializer_paths(result_serializers))
        self.tasks: list[tuple[str, str | None, str]] = []

    def add(self, function_id: str, *args: Any, **kwargs: Any) -> None:
        """add(fn_id, args, kwargs) as in the SDK, or add(fn_id, endpoint_id, args, kwargs)."""
        endpoint_id = kwargs.pop("endpoint_id", None)
        rest = list(args)
        if rest and isinstance(rest[0], (str, uuid.UUID)):
            endpoint_id = str(rest.pop(0))
        task_args = kwargs.pop("args", rest.pop(0) if rest else None)
        task_kwargs = kwargs.pop("kwargs", rest.pop(0) if rest else None)
        if kwargs or rest:
            raise TypeError("Batch.add takes function_id, [endpoint_id], args and kwargs")
        payload = pack_payload(tuple(task_args or ()), task_kwargs or {}, self._serde.strategy_data)
        self.tasks.append((str(function_id), endpoint_id, payload))

    def prepare(self) -> dict[str, Any]:
        """The body the SDK's Batch.prepare builds for POST /v3/endpoints/{id}/submit."""
        tasks: dict[str, list[str]] = {}
        for function_id, _, payload in self.tasks:
            tasks.setdefault(function_id, []).append(payload)
        data: dict[str, Any] = {"create_queue": self.request_queue, "tasks": tasks}
        if self.task_group_id:
            data["task_group_id"] = self.task_group_id
        if self.resource_specification:
            data["resource_specification"] = self.resource_specification
        if self.user_endpoint_config:
            data["user_endpoint_config"] = self.user_endpoint_config
        if self.user_runtime:
            data["user_runtime"] = self.user_runtime
        if self.result_serializers:
            data["result_serializers"] = self.result_serializers
        return data

    def options_json(self) -> tuple[str, str, str]:
        """(user_endpoint_config, resource_specification, user_runtime) as JSON text, or ""."""
        return tuple(  # type: ignore[return-value]
            json.dumps(value) if value else ""
            for value in (self.user_endpoint_config, self.resource_specification, self.user_runtime)
        )

    def __len__(self) -> int:
        return len(self.tasks)

    def __bool__(self) -> bool:
        return bool(self.tasks)


_ENDPOINT_ADMIN = (
    "{} is not offered: fxgate submits to endpoints and does not administer them; "
    "use the Globus Compute SDK or the globus-compute-endpoint command"
)


def _refuse_service_choice(
    environment: str | None, local_compute_services: bool, app: Any, authorizer: Any
) -> None:
    """NotOffered for an SDK keyword that would pick the service or the Globus identity."""
    if app is not None or authorizer is not None:
        raise NotOffered(
            "Client(app=/authorizer=) is not offered: tasks reach Globus Compute with the "
            "daemon's own credentials (its globus settings), not a script's login, so they "
            "would run as another identity; configure the daemon, or use the Globus "
            "Compute SDK for this script"
        )
    if environment is not None or local_compute_services:
        raise NotOffered(
            "Client(environment=/local_compute_services=) is not offered: the daemon's "
            "configuration (globus.base_url) chooses the Globus Compute service for every "
            "script; leave it unset here"
        )


class Client:
    """Direct calls to the daemon, one per method.

    Every call that takes a task id accepts fxgate's id or the Globus one.
    """

    def __init__(
        self,
        address: str | None = None,
        task_group_id: str | None = None,
        *,
        code_serialization_strategy: Any = None,
        data_serialization_strategy: Any = None,
        environment: str | None = None,
        local_compute_services: bool = False,
        do_version_check: bool = True,
        app: Any = None,
        authorizer: Any = None,
        **kwargs: Any,
    ):
        """`address`: the daemon's (default as `fxgate status` resolves it). The SDK's
        keywords that choose the service or the identity tasks run as are the daemon's
        configuration, so setting one is refused (NotOffered), never dropped."""
        _refuse_service_choice(environment, local_compute_services, app, authorizer)
        for name in kwargs:  # as the SDK does with keywords it no longer knows
            warnings.warn(
                f"The '{name}' argument is unrecognized. "
                "(It might have been removed in a previous release.)",
                stacklevel=2,
            )
        if task_group_id is not None and not isinstance(task_group_id, (str, uuid.UUID)):
            raise TypeError(  # e.g. the SDK's Client(None, True): local_compute_services
                "Client's second parameter is fxgate's task_group_id (a UUID); the SDK's "
                f"local_compute_services is not offered; got {type(task_group_id).__name__}"
            )
        self.do_version_check = do_version_check  # the daemon answers or calls fail
        # Checked before connecting: a strategy fxgate cannot honour fails here.
        self.fx_serializer = serializer_from(
            code_serialization_strategy, data_serialization_strategy
        )
        self._conn = Connection(address)
        self.session_task_group_id = str(task_group_id or uuid.uuid4())

    @property
    def fx_serializer(self) -> Any:
        """What serializes function code and arguments and may read results: as set (an
        fxgate Serializer or the SDK's ComputeSerializer, its allowlist honoured)."""
        return self._serializer_given

    @fx_serializer.setter
    def fx_serializer(self, value: Any) -> None:
        self._serde: Serializer = serializer_of(value)
        self._serializer_given = value if value is not None else self._serde

    @property
    def address(self) -> str:
        return self._conn.address

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def register_function(
        self,
        function: Callable[..., Any],
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        public: bool = False,
        group: str | None = None,
        ha_endpoint_id: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Store the function in the daemon; the id is stable for the same registration.

        description (default: the docstring) goes to the service with the code,
        as the SDK sends it; metadata with a function is a ValueError, as in the
        SDK. public, group and ha_endpoint_id are refused (NotOffered): see
        client/registration.py. funcX's function_name keyword names the function.
        """
        options = dict(public=public, group=group, ha_endpoint_id=ha_endpoint_id, **kwargs)
        registration.check_options(options)
        name = kwargs.get("function_name") or getattr(function, "__name__", "function")
        strategy = self._serde.strategy_code
        code = pack_function(function, strategy)
        return self._register(
            registration.function_request(
                function, str(name), code, strategy.identifier, description, metadata
            )
        )

    def register_source_code(
        self,
        source: str,
        function_name: str,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        public: bool = False,
        group: str | None = None,
        ha_endpoint_id: str | None = None,
    ) -> str:
        """Register source text that defines function_name (the SDK's "st" strategy)."""
        registration.check_options(dict(public=public, group=group, ha_endpoint_id=ha_endpoint_id))
        return self._register(
            registration.source_request(source, function_name, description, metadata)
        )

    def _register(self, request: pb.RegisterFunctionRequest) -> str:
        response = self._conn.call(
            lambda: self._conn.stub.RegisterFunction(request), what="RegisterFunction"
        )
        return str(response.function_id)

    def get_function(self, function_id: str | uuid.UUID) -> Any:
        """A function's record ("function_uuid", "function_name", "function_code", ...):
        fxgate's for a function registered here, else the Globus Compute service's."""
        request = pb.DescribeFunctionRequest(function_id=str(function_id))
        return self._json(lambda: self._conn.stub.DescribeFunction(request), "DescribeFunction")

    def get_endpoint_status(self, endpoint_uuid: str | uuid.UUID) -> Any:
        """{"status", "details": {"total_workers", ...}}, as the service reports it
        (the local endpoint: online, with its worker counts)."""
        request = pb.DescribeEndpointRequest(endpoint_id=str(endpoint_uuid))
        return self._json(lambda: self._conn.stub.DescribeEndpoint(request), "DescribeEndpoint")

    def get_endpoint_metadata(self, endpoint_uuid: str | uuid.UUID) -> Any:
        """The endpoint's metadata (name, hostname, versions, ...), as the service gives it."""
        request = pb.DescribeEndpointRequest(endpoint_id=str(endpoint_uuid), metadata=True)
        return self._json(lambda: self._conn.stub.DescribeEndpoint(request), "DescribeEndpoint")

    def get_endpoints(self, role: str | None = None) -> Any:
        """The local endpoint, then the Globus endpoints the daemon's credentials see."""
        request = pb.ListEndpointsRequest(role=role or "")
        return self._json(lambda: self._conn.stub.ListEndpoints(request), "ListEndpoints")

    def _json(self, rpc: Callable[[], pb.JsonDocument], what: str) -> Any:
        """The JSON document a lookup answers with (the service's own, for Globus endpoints)."""
        return json.loads(self._conn.call(rpc, what=what).json)

    def get_worker_hardware_details(self, endpoint_id: str | uuid.UUID) -> str:
        """Start a hardware report on a worker of the endpoint; its task id (see get_result)."""
        name = registration.HARDWARE_REPORT_NAME
        function_id = self.register_source_code(registration.HARDWARE_REPORT_SOURCE, name)
        return self.run("Compute Endpoint worker", endpoint_id=endpoint_id, function_id=function_id)

    def version_check(self, endpoint_version: str | None = None) -> None:
        """Raise if the daemon cannot be reached; the client and daemon share one contract,
        so there is no minimum version to compare (endpoint_version is not checked)."""
        self._conn.call(lambda: self._conn.stub.Status(pb.StatusRequest()), what="Status")

    def logout(self) -> None:
        """Nothing to forget: an fxgate client holds no Globus credentials (the daemon does)."""

    def get_allowed_functions(self, endpoint_id: str | uuid.UUID) -> Any:
        raise NotOffered(
            "get_allowed_functions is not offered: it reads an endpoint's policy, which the "
            "fxgate daemon does not relay; ask the Globus Compute SDK"
        )

    def delete_function(self, function_id: str) -> Any:
        raise NotOffered(
            "delete_function is not offered: the daemon shares a function among everyone "
            "who registers the same code, so no one client may delete it"
        )

    def get_result_amqp_url(self) -> dict[str, str]:
        raise NotOffered(
            "get_result_amqp_url is not offered: the daemon holds the one broker connection "
            "and streams results to clients itself"
        )

    def register_endpoint(self, *args: Any, **kwargs: Any) -> Any:
        raise NotOffered(_ENDPOINT_ADMIN.format("register_endpoint"))

    def delete_endpoint(self, endpoint_id: str) -> Any:
        raise NotOffered(_ENDPOINT_ADMIN.format("delete_endpoint"))

    def stop_endpoint(self, endpoint_id: str) -> Any:
        raise NotOffered(_ENDPOINT_ADMIN.format("stop_endpoint"))

    def create_batch(
        self,
        task_group_id: str | uuid.UUID | None = None,
        resource_specification: dict[str, Any] | None = None,
        user_endpoint_config: dict[str, Any] | None = None,
        create_websocket_queue: bool = False,
        result_serializers: Iterable[Any] | None = None,
    ) -> Batch:
        """A Batch with this client's serializer and this process's user_runtime, as the SDK's."""
        return Batch(
            str(task_group_id or self.session_task_group_id),
            resource_specification,
            user_endpoint_config,
            create_websocket_queue,
            serializer=self._serde,
            user_runtime=user_runtime(),
            result_serializers=result_serializers,
        )

    def batch_run(self, *args: Any) -> Any:
        """batch_run(batch) -> task ids (funcX), or batch_run(endpoint_id, batch) -> dict (SDK)."""
        if len(args) == 1:
            batch, endpoint_id = args[0], None
        elif len(args) == 2:
            endpoint_id, batch = str(args[0]), args[1]
        else:
            raise TypeError("batch_run(batch) or batch_run(endpoint_id, batch)")
        ids: list[str] = []
        by_endpoint: dict[str, list[tuple[int, str, str]]] = {}
        for i, (fid, ep, payload) in enumerate(batch.tasks):
            target = ep or endpoint_id
            if target is None:
                raise ValueError("no endpoint id for a task: give one to add() or batch_run()")
            by_endpoint.setdefault(target, []).append((i, fid, payload))
        slots: list[str] = [""] * len(batch.tasks)
        group_id = batch.task_group_id
        config, resources, runtime = batch.options_json()
        for ep, tasks in by_endpoint.items():
            request = pb.SubmitRequest(
                task_group_id=group_id,
                endpoint_id=ep,
                submit_id=str(uuid.uuid4()),
                result_serializers=batch.result_serializers,
                user_endpoint_config_json=config,
                resource_specification_json=resources,
                user_runtime_json=runtime,
                tasks=[pb.TaskSpec(function_id=f, payload=p) for _, f, p in tasks],
            )
            response = self._submit(request)
            group_id = response.task_group_id
            for (i, _, _), tid in zip(tasks, response.task_ids, strict=True):
                slots[i] = tid
        ids = slots
        if endpoint_id is None:
            return ids
        by_function: dict[str, list[str]] = {}
        for (fid, _, _), tid in zip(batch.tasks, ids, strict=True):
            by_function.setdefault(fid, []).append(tid)
        return {
            "request_id": str(uuid.uuid4()),
            "task_group_id": group_id,
            "endpoint_id": endpoint_id,
            "tasks": by_function,
        }

    def _submit(self, request: pb.SubmitRequest) -> pb.SubmitResponse:
        response: pb.SubmitResponse = self._conn.call_retrying(
            lambda: self._conn.stub.Submit(request), what="Submit"
        )
        return response

    def run(
        self, *args: Any, endpoint_id: str | uuid.UUID, function_id: str | uuid.UUID, **kwargs: Any
    ) -> str:
        """Run one task; its task id."""
        batch = self.create_batch()
        batch.add(str(function_id), str(endpoint_id), args, kwargs)
        return str(self.batch_run(batch)[0])

    def get_task(self, task_id: str | uuid.UUID) -> dict[str, Any]:
        """{"pending", "status", and "result" once finished}; as the SDK's, a failed task
        raises its exception (TaskExecutionFailed), and an unknown id raises."""
        doc = self._document(self._events([str(task_id)])[0])
        if "exception" in doc:
            raise doc["exception"]
        return doc

    def get_result(self, task_id: str | uuid.UUID) -> Any:
        """The task's value; raises TaskPending if it has not finished, or its exception."""
        event = self._events([str(task_id)])[0]
        if event.state < pb.TASK_STATE_SUCCESS:
            raise TaskPending(TaskState(event.state).name.lower())
        fut = ComputeFuture(event.task_id)
        resolve(fut, event, self._serde.allowed)
        return fut.result(timeout=0)

    def _document(self, event: pb.TaskEvent) -> dict[str, Any]:
        """A task's status document, in the SDK's get_task shape ("exception": the
        failure get_task raises)."""
        status = TaskState(event.state).name.lower()
        doc: dict[str, Any] = {"pending": event.state < pb.TASK_STATE_SUCCESS, "status": status}
        if not doc["pending"]:
            fut = ComputeFuture(event.task_id)
            resolve(fut, event, self._serde.allowed)
            doc["completion_t"] = str(event.completed_at)
            if fut.cancelled():
                doc["reason"] = "cancelled"
            elif fut.exception(timeout=0) is not None:
                doc["exception"] = fut.exception(timeout=0)
            else:
                doc["result"] = fut.result(timeout=0)
        return doc

    def get_batch_result(
        self, task_id_list: Iterable[str | uuid.UUID]
    ) -> dict[str, dict[str, Any]]:
        """{task id: get_task's document} for the known ids; unknown ids are left out.

        Keyed by the id as asked (fxgate's or the Globus one), in canonical spelling.
        """
        asked = [str(t) for t in task_id_list]
        wanted = {_canonical(t) for t in asked}
        out: dict[str, dict[str, Any]] = {}
        for event in self._events(asked, omit_unknown=True):
            doc = self._document(event)
            if "exception" in doc:  # as the SDK's: logged, and left out of the answer
                log.error("task %s failed: %s", event.task_id, doc["exception"])
                continue
            if event.task_id in wanted:
                out[event.task_id] = doc
            if event.upstream_task_id in wanted:
                out[event.upstream_task_id] = doc
        return out

    def _events(self, task_ids: list[str], omit_unknown: bool = False) -> list[pb.TaskEvent]:
        request = pb.GetTasksRequest(task_ids=task_ids, omit_unknown=omit_unknown)
        response = self._conn.call(lambda: self._conn.stub.GetTasks(request), what="GetTasks")
        return list(response.tasks)

    def get_task_group(self, task_group_id: str) -> dict[str, Any]:
        """{"taskgroup_id", "endpoint_id", "tasks": [{"id", "status", "upstream_task_id"}]}
        as the service lists it; task_group_id may be fxgate's or the Globus one."""
        response = self._conn.call(
            lambda: self._conn.stub.GetTaskGroup(
                pb.GetTaskGroupRequest(task_group_id=str(task_group_id))
            ),
            what="GetTaskGroup",
        )
        return {
            "taskgroup_id": response.task_group_id,
            "endpoint_id": response.endpoint_id,
            "upstream_task_group_id": response.upstream_task_group_id or None,
            "tasks": [
                {
                    "id": t.task_id,
                    "status": TaskState(t.state).name.lower(),
                    "upstream_task_id": t.upstream_task_id or None,
                }
                for t in response.tasks
            ],
        }

    def cancel(self, task_ids: Iterable[str | uuid.UUID]) -> list[str]:
        """Cancel tasks (an fxgate extra: the SDK's Client has no cancel); the ids cancelled.

        Tasks not started are withdrawn; running local ones are stopped (their
        worker is ended and replaced). A task the upstream cannot stop (a
        Globus one it accepted) is left running: cancel_outcomes says why.
        """
        return [o["task_id"] for o in self.cancel_outcomes(task_ids) if o["outcome"] == "cancelled"]

    def cancel_outcomes(
        self, task_ids: Iterable[str | uuid.UUID], *, not_started_only: bool = False
    ) -> list[dict[str, Any]]:
        """What a cancel did to each task (an fxgate extra): {"task_id", "outcome",
        "message", "was_running"}, outcome one of "cancelled", "already_finished",
        "running_cannot_stop", "unknown". not_started_only: leave running tasks running."""
        request = pb.CancelRequest(
            task_ids=[str(t) for t in task_ids], not_started_only=not_started_only
        )
        response = self._conn.call(lambda: self._conn.stub.Cancel(request), what="Cancel")
        return [
            {
                "task_id": o.task_id,
                "outcome": CancelOutcome(o.outcome).name.lower(),
                "message": o.message,
                "was_running": o.was_running,
            }
            for o in response.outcomes
        ]

    def release_task_group(self, task_group_id: str, *, cancel_unfinished: bool = False) -> int:
        """Forget a group and its stored results; the number of tasks released.

        A group with unfinished tasks is refused (RequestRefused, FAILED_PRECONDITION,
        naming some of them) unless cancel_unfinished: then they are cancelled
        first (running local ones stopped) and their futures resolve cancelled.
        """
        request = pb.ReleaseGroupRequest(
            task_group_id=str(task_group_id), cancel_unfinished=cancel_unfinished
        )
        response = self._conn.call(
            lambda: self._conn.stub.ReleaseGroup(request), what="ReleaseGroup"
        )
        return int(response.tasks_released)

    def list_task_groups(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The task groups the daemon holds, newest first (the newest `limit`, if given).

        Each is {"task_group_id", "endpoint_id", "upstream" ("local" or "globus"),
        "label" (Executor(label=...) or None), "upstream_task_group_id" (or None),
        "created_at", "updated_at" (epoch seconds), "tasks" ({state: count} for
        every state: "accepted", "submitted", "running", "success", "failed",
        "cancelled"), "total", "last_seq"}. How to find a lost task group id.
        """
        return listing.task_groups(self._conn, limit)

    def get_task_group_status(self, task_group_id: str | uuid.UUID) -> dict[str, Any]:
        """One group's document, as list_task_groups shapes it (fxgate's id or the Globus one)."""
        return listing.task_group(self._conn, str(task_group_id))

    def list_tasks(
        self, task_group_id: str | uuid.UUID, state: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """A group's tasks by task id, without results: [{"task_id", "status",
        "upstream_task_id", "created_at", "completed_at", "error_code", "error_message"}];
        `state` (e.g. "failed") keeps only tasks in that state."""
        return listing.tasks(self._conn, str(task_group_id), state, limit)

    def collect_garbage(self, dry_run: bool = False) -> dict[str, Any]:
        """Release now the finished groups older than the daemon's retention_days
        (dry_run: only list them): {"dry_run", "cutoff", "task_group_ids", "tasks_released"}."""
        return listing.collect_garbage(self._conn, dry_run)

    def status(self) -> dict[str, Any]:
        """The daemon's health and counts, as plain data."""
        r = self._conn.call(lambda: self._conn.stub.Status(pb.StatusRequest()), what="Status")
        return status_document(r)


def _canonical(task_id: str) -> str:
    """A UUID in the spelling the daemon answers with (it may differ in case from the asked)."""
    try:
        return str(uuid.UUID(task_id))
    except ValueError:
        return task_id


FuncXClient = Client
