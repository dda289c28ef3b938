"""The low-level client: register functions, run batches, fetch results by task id.

It mirrors the batch API of the Globus Compute SDK's Client and of funcX's
FuncXClient (both call shapes of Batch.add and batch_run are accepted), so
scripts written for either run with only the import changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from client.connection import Connection
from client.errors import TaskPending, refuse_uncarried
from client.futures import ComputeFuture, resolve
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract.serialize import pack_function, pack_payload
from fxgate_contract.states import TaskState
from fxgate_contract.status import status_document


class Batch:
    """Tasks to submit in one call; an endpoint per task (funcX) or per run (SDK)."""

    def __init__(self, task_group_id: str | None = None, result_serializers: Iterable[str] = ()):
        self.task_group_id = task_group_id
        self.result_serializers = list(result_serializers)
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
        payload = pack_payload(tuple(task_args or ()), task_kwargs or {})
        self.tasks.append((function_id, endpoint_id, payload))

    def __len__(self) -> int:
        return len(self.tasks)

    def __bool__(self) -> bool:
        return bool(self.tasks)


class Client:
    """Direct calls to the daemon, one per method."""

    def __init__(self, address: str | None = None, task_group_id: str | None = None, **sdk: Any):
        refuse_uncarried("Client", sdk)  # the SDK's other keywords name its service: unused
        self._conn = Connection(address)
        self.session_task_group_id = str(task_group_id or uuid.uuid4())

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
        self, function: Callable[..., Any], function_name: str | None = None, **_: Any
    ) -> str:
        """Store the function in the daemon; the id is stable for the same code."""
        request = pb.RegisterFunctionRequest(
            function_name=function_name or getattr(function, "__name__", "function"),
            function_code=pack_function(function),
        )
        response = self._conn.call(
            lambda: self._conn.stub.RegisterFunction(request), what="RegisterFunction"
        )
        return str(response.function_id)

    def create_batch(
        self, task_group_id: str | None = None, result_serializers: Iterable[str] = (), **sdk: Any
    ) -> Batch:
        refuse_uncarried("create_batch", sdk)
        return Batch(str(task_group_id or self.session_task_group_id), result_serializers)

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
        for ep, tasks in by_endpoint.items():
            request = pb.SubmitRequest(
                task_group_id=group_id,
                endpoint_id=ep,
                submit_id=str(uuid.uuid4()),
                result_serializers=batch.result_serializers,
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

    def run(self, *args: Any, endpoint_id: str, function_id: str, **kwargs: Any) -> str:
        """Run one task; its task id."""
        batch = self.create_batch()
        batch.add(function_id, endpoint_id, args, kwargs)
        return str(self.batch_run(batch)[0])

    def get_task(self, task_id: str) -> dict[str, Any]:
        """{"pending", "status", and "result" or "exception" once finished}."""
        # the daemon answers with the canonical id, which may differ in case from the one asked
        (doc,) = self.get_batch_result([task_id]).values()
        return doc

    def get_result(self, task_id: str) -> Any:
        """The task's value; raises TaskPending if it has not finished, or its exception."""
        event = self._events([task_id])[0]
        if event.state < pb.TASK_STATE_SUCCESS:
            raise TaskPending(TaskState(event.state).name.lower())
        fut = ComputeFuture(task_id)
        resolve(fut, event)
        return fut.result(timeout=0)

    def get_batch_result(self, task_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for event in self._events(list(task_ids)):
            status = TaskState(event.state).name.lower()
            doc: dict[str, Any] = {"pending": event.state < pb.TASK_STATE_SUCCESS, "status": status}
            if not doc["pending"]:
                fut = ComputeFuture(event.task_id)
                resolve(fut, event)
                doc["completion_t"] = str(event.completed_at)
                if fut.cancelled():
                    doc["reason"] = "cancelled"
                elif fut.exception(timeout=0) is not None:
                    doc["exception"] = fut.exception(timeout=0)
                else:
                    doc["result"] = fut.result(timeout=0)
            out[event.task_id] = doc
        return out

    def _events(self, task_ids: list[str]) -> list[pb.TaskEvent]:
        response = self._conn.call(
            lambda: self._conn.stub.GetTasks(pb.GetTasksRequest(task_ids=task_ids)), what="GetTasks"
        )
        return list(response.tasks)

    def get_task_group(self, task_group_id: str) -> dict[str, Any]:
        """{"taskgroup_id", "endpoint_id", "tasks": [{"id", "status"}]} as the service lists it."""
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
                {"id": t.task_id, "status": TaskState(t.state).name.lower()} for t in response.tasks
            ],
        }

    def cancel(self, task_ids: Iterable[str]) -> list[str]:
        """Cancel tasks that have not started; the ids that were cancelled."""
        request = pb.CancelRequest(task_ids=[str(t) for t in task_ids])
        response = self._conn.call(lambda: self._conn.stub.Cancel(request), what="Cancel")
        return list(response.cancelled_task_ids)

    def release_task_group(self, task_group_id: str) -> int:
        """Forget a group and its stored results; the number of tasks released."""
        request = pb.ReleaseGroupRequest(task_group_id=str(task_group_id))
        response = self._conn.call(
            lambda: self._conn.stub.ReleaseGroup(request), what="ReleaseGroup"
        )
        return int(response.tasks_released)

    def status(self) -> dict[str, Any]:
        """The daemon's health and counts, as plain data."""
        r = self._conn.call(lambda: self._conn.stub.Status(pb.StatusRequest()), what="Status")
        return status_document(r)


FuncXClient = Client
