"""A fake Globus Compute web service plus endpoint, on loopback, with fault controls.

fxgate must be tested against the real wire without the real cloud: this
server speaks the JSON routes a client uses (globus-compute-wire.md §1) and
delivers results as the real messagepack `Result` bytes (§3) into the per
task-group queue `queue_prefix + task_group_id` (§2.1) on a real broker.
Tasks run in-process through globus-compute-endpoint's own `execute_task`
(mode "execute"), or are only recorded so a test publishes results itself
(mode "manual"; run_waiting() runs them later). Faults: service down (503),
next n requests refused (429 + Retry-After), submits held unanswered
(hold_submits / release_submits), and counters that let a test assert "submitted exactly
once". Run standalone with `python -m tests.support.fake_globus --amqp-url URL`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import queue
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions
from globus_compute_common import messagepack
from globus_compute_common.messagepack.message_types import Result, Task
from globus_compute_common.messagepack.message_types.result import ResultErrorDetails

from fxgate_contract.framing import pack_buffers

if TYPE_CHECKING:
    from globus_compute_sdk import Client

log = logging.getLogger(__name__)

Mode = Literal["execute", "manual"]
JSON = dict[str, Any]

MAX_PAYLOAD_CHARS = 10 * 1024 * 1024  # documented 10 MB submission limit
API_VERSION = "1.0.0"
TERMINAL = ("success", "failed")
FAKE_USER_ID = "b0b0b0b0-0000-4000-8000-00000000f4ce"  # the owner of every fake endpoint
_USER_ERROR = ("RemoteExecutionError", "An error occurred during the execution of this task")


# --------------------------------------------------------------------- wire helpers


class ApiError(Exception):
    """An HTTP error answered with the service's JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> JSON:
        return error_body(self.status, self.code, self.message)


def error_body(status: int, code: str, message: str) -> JSON:
    """The service's error JSON: string `code`, message/reason, http_status_code."""
    return {
        "code": code,
        "message": message,
        "reason": message,
        "http_status_code": status,
        "status": "Failed",
    }


def result_body(
    task_id: str | uuid.UUID,
    data: str,
    *,
    error: bool = False,
    details: JSON | None = None,
) -> bytes:
    """Raw AMQP body of a Result message, exactly as an endpoint publishes it.

    `data` is the serialized result (e.g. "11\\n" + JSON) or, with error=True,
    the remote traceback text; an error result carries error_details.
    """
    error_details = ResultErrorDetails(code=_USER_ERROR[0], user_message=_USER_ERROR[1])
    msg = Result(
        task_id=uuid.UUID(str(task_id)),
        data=data,
        details=details,
        error_details=error_details if error else None,
    )
    return bytes(messagepack.pack(msg))


def _parse_uuid(value: object, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ApiError(400, "BAD_REQUEST", f"{what} is not a valid UUID: {value!r}") from None


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


# ------------------------------------------------------------------------- records


@dataclass(frozen=True)
class AcceptedTask:
    """One task the service accepted: what was submitted, where, under which id."""

    task_id: str
    task_group_id: str
    endpoint_id: str
    function_id: str
    payload: str


@dataclass
class _TaskRecord:
    accepted: AcceptedTask
    result_serializers: list[str] | None
    created_at: str = field(default_factory=_now_iso)
    status: str = "waiting-for-ep"
    result: str | None = None
    exception: str | None = None
    completion_t: str | None = None
    details: JSON = field(default_factory=dict)

    def doc(self) -> JSON:
        """The task doc of GET /v2/tasks/{id} and /v2/batch_status."""
        d: JSON = {"task_id": self.accepted.task_id, "status": self.status}
        if self.details:
            d["details"] = self.details
        if self.status in TERMINAL:
            d["completion_t"] = self.completion_t
            if self.status == "success":
                d["result"] = self.result
            else:
                d["exception"] = self.exception
        return d

    def complete(self, result: Result) -> None:
        self.completion_t = f"{time.time():.6f}"
        details = dict(result.details or {})
        details["task_transitions"] = {
            str(getattr(tt.state, "value", tt.state)): tt.timestamp / 1e9
            for tt in result.task_statuses or []
        }
        self.details = json.loads(json.dumps(details, default=str))
        if result.is_error:
            self.status, self.exception = "failed", result.data
        else:
            self.status, self.result = "success", result.data


@dataclass
class _TaskGroup:
    task_group_id: str
    queue_created: bool = False
    task_ids: list[str] = field(default_factory=list)


# ----------------------------------------------------------------- AMQP publisher


@dataclass
class _AmqpJob:
    kind: Literal["declare", "publish"]
    queue: str
    body: bytes = b""
    done: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)


class _AmqpPublisher(threading.Thread):
    """The one thread owning the pika BlockingConnection that declares and publishes.

    Jobs are retried across broker restarts (reconnecting) until they succeed
    or the publisher stops, so the fake rides out stop_app/start_app like a
    real service; persistent messages are published with confirms.
    """

    def __init__(self, amqp_url: str) -> None:
        super().__init__(name="fake-globus-amqp", daemon=True)
        self._params = pika.URLParameters(amqp_url)
        self._jobs: queue.Queue[_AmqpJob | None] = queue.Queue()
        self._stopping = threading.Event()
        self._conn: pika.BlockingConnection | None = None
        self._chan: Any = None
        self.published = 0
        self.reconnects = 0

    def submit(self, job: _AmqpJob) -> concurrent.futures.Future[None]:
        if self._stopping.is_set():
            job.done.set_exception(RuntimeError("AMQP publisher stopped"))
        else:
            self._jobs.put(job)
        return job.done

    def stop(self) -> None:
        self._stopping.set()
        self._jobs.put(None)
        self.join(timeout=30)

    def run(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=1.0)
            except queue.Empty:
                self._service_heartbeats()
                continue
            if job is None:
                break
            self._run_job(job)
        self._fail_pending()
        self._disconnect()

    def _run_job(self, job: _AmqpJob) -> None:
        backoff = 0.05
        while not self._stopping.is_set():
            try:
                self._perform(job)
            except pika.exceptions.UnroutableError:
                job.done.set_exception(RuntimeError(f"queue {job.queue} does not exist"))
                return
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.info(
                    "fake globus: AMQP %s to %s failed (%r); retrying", job.kind, job.queue, exc
                )
                self._disconnect()
                self._stopping.wait(backoff)  # retry backoff, not synchronization
                backoff = min(backoff * 2, 1.0)
            else:
                job.done.set_result(None)
                return
        job.done.set_exception(RuntimeError("AMQP publisher stopped"))

    def _perform(self, job: _AmqpJob) -> None:
        chan = self._channel()
        if job.kind == "declare":
            chan.queue_declare(queue=job.queue, durable=True)
            return
        props = pika.BasicProperties(delivery_mode=2, timestamp=int(time.time()))
        chan.basic_publish("", job.queue, job.body, properties=props, mandatory=True)
        self.published += 1

    def _channel(self) -> Any:
        if self._conn is None or self._conn.is_closed:
            self._conn = pika.BlockingConnection(self._params)
            self._chan = self._conn.channel()
            self._chan.confirm_delivery()
            self.reconnects += 1
        return self._chan

    def _service_heartbeats(self) -> None:
        if self._conn is not None and self._conn.is_open:
            try:
                self._conn.process_data_events(time_limit=0)
            except (pika.exceptions.AMQPError, OSError):
                self._disconnect()

    def _disconnect(self) -> None:
        conn, self._conn, self._chan = self._conn, None, None
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except (pika.exceptions.AMQPError, OSError):
                pass

    def _fail_pending(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None and not job.done.done():
                job.done.set_exception(RuntimeError("AMQP publisher stopped"))


# ------------------------------------------------------------------------- the fake


class FakeGlobus:
    """Fake Globus Compute web service + endpoint on 127.0.0.1.

    Attributes: `base_url`, `port`, `token`, `endpoint_id` (a registered,
    online endpoint), `queue_prefix`, `mode`. Counters (read under no lock,
    they only grow): `requests_received`, `requests_by_route`,
    `submits_received` (every submit POST, faulted ones included),
    `submits_accepted`, `faults_injected`, `tasks_per_endpoint`, `accepted`
    (every AcceptedTask in order), `submit_bodies` (every submit body that got
    past fault injection, as received: read it with `submit_bodies_since`),
    `function_bodies` (every function registration body).
    """

    def __init__(
        self,
        amqp_url: str,
        *,
        token: str = "fake-globus-token",
        host: str = "127.0.0.1",
        port: int = 0,
        mode: Mode = "execute",
        queue_prefix: str = "fxfake.",
        endpoint_id: str | None = None,
        connection_url: str | None = None,
        workers: int = 4,
        min_sdk_version: str = "2.0.0",
        min_ep_version: str = "2.0.0",
    ) -> None:
        self.token = token
        self.host = host
        self.queue_prefix = queue_prefix
        self.connection_url = connection_url or amqp_url
        self.mode: Mode = mode
        self.min_sdk_version, self.min_ep_version = min_sdk_version, min_ep_version
        self.endpoint_id = endpoint_id or str(uuid.uuid4())
        self._cond = threading.Condition()
        self._endpoints: set[str] = {self.endpoint_id}
        self._functions: dict[str, str] = {}
        self._function_names: dict[str, str] = {}
        self._groups: dict[str, _TaskGroup] = {}
        self._tasks: dict[str, _TaskRecord] = {}
        self._down = False
        self._down_retry_after: int | None = None
        self._fail_n = 0
        self._fail_status = 429
        self._fail_retry_after: int | None = 1
        self._holding = False  # hold_submits(): submits wait until release_submits()
        self.submits_held = 0  # submit requests waiting in hold_submits() now
        self.requests_received = 0
        self.requests_by_route: Counter[str] = Counter()
        self.submits_received = 0
        self.submits_accepted = 0
        # Every submit body as received (JSON-decoded), in order: what a client sent.
        self.submit_bodies: list[JSON] = []
        self.function_bodies: list[JSON] = []  # every function registration body, as received
        self.faults_injected = 0
        self.tasks_per_endpoint: Counter[str] = Counter()
        self.accepted: list[AcceptedTask] = []
        # (monotonic time, route, answered with an injected fault) of every API request
        self.request_log: list[tuple[float, str, bool]] = []
        self._run_dir = os.getcwd()  # execute_task chdir()s here: keep it the process cwd
        self._workers = workers
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="fake-ep")
        self._publisher = _AmqpPublisher(amqp_url)
        self._server = _Server((host, port), self)
        self._server_thread = threading.Thread(
            target=self._serve, name="fake-globus-http", daemon=True
        )
        self._started = False

    # ------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def daemon_env(self) -> dict[str, str]:
        """The settings of a daemon whose Globus upstream is this fake, sending batches fast."""
        return {
            "FXGATE_GLOBUS_BASE_URL": self.base_url,
            "FXGATE_GLOBUS_TOKEN": self.token,
            "FXGATE_GLOBUS_BATCH_INTERVAL_MS": "5",
        }

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=0.05)  # shutdown() waits one poll at most

    def start(self) -> FakeGlobus:
        """Start serving HTTP and the AMQP publisher thread."""
        if not self._started:
            self._publisher.start()
            self._server_thread.start()
            self._started = True
        return self

    def stop(self) -> None:
        """Stop HTTP, let running tasks finish, stop the publisher; idempotent."""
        if not self._started:
            self._server.server_close()
            return
        self._started = False
        self.release_submits()
        self._server.shutdown()
        self._server.server_close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._publisher.stop()

    def __enter__(self) -> FakeGlobus:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -------------------------------------------------------- fault controls

    def set_down(self, down: bool, retry_after: int | None = None) -> None:
        """While down, every API request is answered 503 (optionally with Retry-After)."""
        with self._cond:
            self._down, self._down_retry_after = down, retry_after

    def fail_next(self, n: int, status: int = 429, retry_after: int | None = 1) -> None:
        """Answer the next n API requests with `status` and a Retry-After header."""
        with self._cond:
            self._fail_n, self._fail_status, self._fail_retry_after = n, status, retry_after

    def hold_submits(self) -> None:
        """Keep every submit request waiting, unanswered, until release_submits()."""
        with self._cond:
            self._holding = True

    def release_submits(self) -> None:
        """Let held submit requests (and later ones) through."""
        with self._cond:
            self._holding = False
            self._cond.notify_all()

    def run_waiting(self) -> None:
        """Switch to mode "execute" and run every task that is still waiting for the endpoint."""
        self.mode = "execute"
        with self._cond:
            waiting = [r for r in self._tasks.values() if r.status == "waiting-for-ep"]
        for rec in waiting:
            self._pool.submit(self._execute, rec)

    def set_mode(self, mode: Mode) -> None:
        """Switch mode: "execute" runs tasks and publishes results, "manual" only records."""
        if mode not in ("execute", "manual"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode

    def add_endpoint(self, endpoint_id: str | None = None) -> str:
        """Register another online endpoint; returns its id."""
        ep = str(uuid.UUID(endpoint_id)) if endpoint_id else str(uuid.uuid4())
        with self._cond:
            self._endpoints.add(ep)
        return ep

    # ------------------------------------------------------ test observation

    def queue_name(self, task_group_id: str | uuid.UUID) -> str:
        """The AMQP result queue of a task group: prefix + canonical UUID."""
        return f"{self.queue_prefix}{uuid.UUID(str(task_group_id))}"

    def submitted_payloads(self) -> Counter[tuple[str, str]]:
        """How often each (task_group_id, payload) was accepted: assert == 1 for exactly-once."""
        with self._cond:
            return Counter((a.task_group_id, a.payload) for a in self.accepted)

    def task_doc(self, task_id: str) -> JSON:
        """The current HTTP task doc of a task (KeyError if unknown)."""
        with self._cond:
            return self._tasks[task_id].doc()

    def stats(self) -> JSON:
        """All counters as plain JSON."""
        with self._cond:
            done = sum(1 for r in self._tasks.values() if r.status in TERMINAL)
            return {
                "requests_received": self.requests_received,
                "requests_by_route": dict(self.requests_by_route),
                "submits_received": self.submits_received,
                "submits_accepted": self.submits_accepted,
                "faults_injected": self.faults_injected,
                "tasks_per_endpoint": dict(self.tasks_per_endpoint),
                "tasks_accepted": len(self.accepted),
                "tasks_completed": done,
                "results_published": self._publisher.published,
                "mode": self.mode,
            }

    def submit_bodies_since(self, start: int) -> list[JSON]:
        """The submit bodies received after the first `start` ones."""
        with self._cond:
            return list(self.submit_bodies[start:])

    def registered_code(self, function_id: str) -> str:
        """The function_code a client registered under this id."""
        with self._cond:
            return self._functions[function_id]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Block until predicate() (evaluated under the state lock) holds, or timeout."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_for_tasks(self, n: int, timeout: float = 30.0) -> list[AcceptedTask]:
        """Wait until at least n tasks were accepted; return the accepted list."""
        if not self.wait_for(lambda: len(self.accepted) >= n, timeout):
            raise TimeoutError(f"only {len(self.accepted)} of {n} tasks accepted")
        with self._cond:
            return list(self.accepted)

    def wait_for_completed(self, n: int, timeout: float = 30.0) -> None:
        """Wait until at least n tasks have a terminal status."""

        def done() -> bool:
            return sum(1 for r in self._tasks.values() if r.status in TERMINAL) >= n

        if not self.wait_for(done, timeout):
            raise TimeoutError(f"fewer than {n} tasks completed")

    # ------------------------------------------------------- manual results

    def publish_result(self, task_id: str, data: str, error: bool = False) -> None:
        """Complete a task by hand: record its doc and publish its Result (waits for confirm)."""
        body = result_body(task_id, data, error=error)
        self._complete(task_id, _unpack_result(body), body, wait=True)

    # ----------------------------------------------------- request handling

    def request_gaps_after_faults(self) -> list[float]:
        """Seconds between each injected fault and the next request of the same route."""
        with self._cond:
            log = list(self.request_log)
        gaps = []
        for i, (at, route, faulted) in enumerate(log):
            if faulted:
                later = [t for t, r, _ in log[i + 1 :] if r == route]
                if later:
                    gaps.append(later[0] - at)
        return gaps

    def _count_and_fault(self, route: str) -> tuple[int, JSON, dict[str, str]] | None:
        fault = self._fault(route)
        with self._cond:
            self.request_log.append((time.monotonic(), route, fault is not None))
        return fault

    def _fault(self, route: str) -> tuple[int, JSON, dict[str, str]] | None:
        with self._cond:
            self.requests_received += 1
            self.requests_by_route[route] += 1
            if route == "submit":
                self.submits_received += 1
            if self._down:
                self.faults_injected += 1
                headers = _retry_after(self._down_retry_after)
                return 503, error_body(503, "SERVICE_UNAVAILABLE", "service is down"), headers
            if self._fail_n > 0:
                self._fail_n -= 1
                self.faults_injected += 1
                status = self._fail_status
                code = "TOO_MANY_REQUESTS" if status == 429 else "INJECTED_FAULT"
                body = error_body(status, code, "injected fault")
                return status, body, _retry_after(self._fail_retry_after)
        return None

    def _check_auth(self, header: str | None) -> None:
        if header != f"Bearer {self.token}":
            raise ApiError(401, "UNAUTHORIZED", "missing or invalid bearer token")

    def _version(self, query: dict[str, list[str]]) -> Any:
        if query.get("service") != ["all"]:
            return API_VERSION
        return {
            "api": API_VERSION,
            "min_sdk_version": self.min_sdk_version,
            "min_ep_version": self.min_ep_version,
            "min_endpoint_version": self.min_ep_version,
            "git_sha": "fake",
        }

    def _register_function(self, body: JSON) -> JSON:
        code = body.get("function_code")
        if not isinstance(code, str) or not code:
            raise ApiError(400, "BAD_REQUEST", "function_code (string) is required")
        if len(code) > MAX_PAYLOAD_CHARS:
            raise ApiError(413, "FUNCTION_TOO_LARGE", "function_code exceeds 10 MB")
        if body.get("serialized") is False:  # source text (register_source_code): the
            # service packs it for endpoints with the "st" strategy (wire spec, register)
            code = pack_buffers([f"st\n{body.get('function_name')}:{code}"])
        fn_id = str(uuid.uuid4())
        with self._cond:
            self._functions[fn_id] = code
            self._function_names[fn_id] = str(body.get("function_name") or "")
            self.function_bodies.append(body)
        return {"function_uuid": fn_id}

    def _get_function(self, function_id: str) -> JSON:
        """GET /v2/functions/{id}, in the shape of globus-sdk's get_function fixture."""
        fn = _parse_uuid(function_id, "function_id")
        with self._cond:
            code = self._functions.get(fn)
            name = self._function_names.get(fn, "")
        if code is None:
            raise ApiError(404, "FUNCTION_NOT_FOUND", f"function {fn} not found")
        return {
            "function_uuid": fn,
            "function_name": name,
            "function_code": code,
            "description": None,
            "metadata": {"python_version": "3.11", "sdk_version": "fake"},
        }

    def _endpoint_doc(self, endpoint_id: str) -> JSON:
        """An entry of GET /v2/endpoints (globus-sdk's get_endpoints fixture)."""
        return {
            "uuid": endpoint_id,
            "name": f"fake-{endpoint_id[:8]}",
            "display_name": f"Fake endpoint {endpoint_id[:8]}",
            "owner": FAKE_USER_ID,
        }

    def _get_endpoints(self, query: dict[str, list[str]]) -> list[JSON]:
        role = (query.get("role") or ["owner"])[0]
        if role not in ("owner", "any"):
            raise ApiError(400, "BAD_REQUEST", f"unknown role {role}")
        with self._cond:
            return [self._endpoint_doc(ep) for ep in sorted(self._endpoints)]

    def _get_endpoint(self, endpoint_id: str) -> JSON:
        """GET /v2/endpoints/{id}, in the shape of globus-sdk's get_endpoint fixture."""
        ep = _parse_uuid(endpoint_id, "endpoint_id")
        with self._cond:
            if ep not in self._endpoints:
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"endpoint {ep} not found")
        return {
            **self._endpoint_doc(ep),
            "multi_user": False,
            "public": False,
            "endpoint_config": "engine:\n  type: GlobusComputeEngine",
            "description": "an endpoint of the fake Globus Compute service",
            "hostname": "fake-host",
            "local_user": "fake",
            "ip_address": "127.0.0.1",
            "endpoint_version": "2.31.0",
            "sdk_version": "2.31.0",
        }

    def _amqp_url(self) -> JSON:
        return {"connection_url": self.connection_url, "queue_prefix": self.queue_prefix}

    def _endpoint_status(self, endpoint_id: str) -> JSON:
        ep = _parse_uuid(endpoint_id, "endpoint_id")
        with self._cond:
            if ep not in self._endpoints:
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"endpoint {ep} not found")
            pending = sum(
                1
                for r in self._tasks.values()
                if r.accepted.endpoint_id == ep and r.status not in TERMINAL
            )
        details = {
            "total_workers": self._workers,
            "idle_workers": 0,
            "pending_tasks": pending,
            "outstanding_tasks": pending,
            "managers": 1,
        }
        return {"status": "online", "details": details}

    def _get_task(self, task_id: str) -> JSON:
        tid = _parse_uuid(task_id, "task_id")
        with self._cond:
            rec = self._tasks.get(tid)
            if rec is None:
                raise ApiError(404, "TASK_NOT_FOUND", f"task {tid} not found")
            return rec.doc()

    def _batch_status(self, body: JSON) -> JSON:
        ids = body.get("task_ids")
        if not isinstance(ids, list):
            raise ApiError(400, "BAD_REQUEST", "task_ids (list) is required")
        with self._cond:
            docs = {str(t): self._tasks[str(t)].doc() for t in ids if str(t) in self._tasks}
        return {"response": "batch", "results": docs}

    def _get_task_group(self, task_group_id: str) -> JSON:
        tg = _parse_uuid(task_group_id, "task_group_id")
        with self._cond:
            group = self._groups.get(tg)
            if group is None:
                raise ApiError(404, "TASK_GROUP_NOT_FOUND", f"task group {tg} not found")
            tasks = [{"id": t, "created_at": self._tasks[t].created_at} for t in group.task_ids]
            return {
                "taskgroup_id": tg,
                "create_websockets_queue": group.queue_created,
                "tasks": tasks,
            }

    # ------------------------------------------------------------ submit

    def _submit(self, endpoint_id: str, body: JSON) -> JSON:
        with self._cond:
            self.submit_bodies.append(body)
            self._cond.notify_all()
        ep = _parse_uuid(endpoint_id, "endpoint_id")
        tasks = _validate_tasks(body.get("tasks"))
        serializers = _validate_serializers(body.get("result_serializers"))
        with self._cond:
            self.submits_held += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._holding)
            self.submits_held -= 1
            if ep not in self._endpoints:
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"endpoint {ep} not found")
            for fn_id in tasks:
                if fn_id not in self._functions:
                    raise ApiError(404, "FUNCTION_NOT_FOUND", f"function {fn_id} not found")
            tg = self._resolve_group(body.get("task_group_id"))
        if body.get("create_queue"):
            self._ensure_queue(tg)
        records = self._record_tasks(tg, ep, tasks, serializers)
        if self.mode == "execute":
            for rec in records:
                self._pool.submit(self._execute, rec)
        response_tasks: dict[str, list[str]] = {}
        for rec in records:
            response_tasks.setdefault(rec.accepted.function_id, []).append(rec.accepted.task_id)
        return {
            "request_id": str(uuid.uuid4()),
            "task_group_id": tg,
            "endpoint_id": ep,
            "tasks": response_tasks,
        }

    def _resolve_group(self, requested: object) -> str:
        """An absent id makes a new group; a client-chosen unknown id is refused."""
        if requested is None:
            tg = str(uuid.uuid4())
            self._groups[tg] = _TaskGroup(tg)
            return tg
        tg = _parse_uuid(requested, "task_group_id")
        if tg not in self._groups:
            raise ApiError(404, "TASK_GROUP_NOT_FOUND", f"task group {tg} not found")
        return tg

    def _ensure_queue(self, tg: str) -> None:
        with self._cond:
            if self._groups[tg].queue_created:
                return
        job = _AmqpJob("declare", self.queue_name(tg))
        try:
            self._publisher.submit(job).result(timeout=30)
        except Exception as exc:
            raise ApiError(503, "RESULT_QUEUE_UNAVAILABLE", f"cannot create queue: {exc}") from exc
        with self._cond:
            self._groups[tg].queue_created = True

    def _record_tasks(
        self, tg: str, ep: str, tasks: dict[str, list[str]], serializers: list[str] | None
    ) -> list[_TaskRecord]:
        records = []
        with self._cond:
            for fn_id, payloads in tasks.items():
                for payload in payloads:
                    acc = AcceptedTask(str(uuid.uuid4()), tg, ep, fn_id, payload)
                    rec = _TaskRecord(acc, serializers)
                    self._tasks[acc.task_id] = rec
                    self._groups[tg].task_ids.append(acc.task_id)
                    self.accepted.append(acc)
                    self.tasks_per_endpoint[ep] += 1
                    records.append(rec)
            self.submits_accepted += 1
            self._cond.notify_all()
        return records

    # --------------------------------------------------------- execution

    def _execute(self, rec: _TaskRecord) -> None:
        """Run one task with the endpoint's own execute_task and publish its Result."""
        from globus_compute_endpoint.engines.helper import (  # type: ignore[import-untyped]
            execute_task,
        )

        acc = rec.accepted
        with self._cond:
            rec.status = "running"
            fn_code = self._functions[acc.function_id]
        # The service hands the endpoint function_code + payload: 3 packed buffers (§4.4).
        task = Task(task_id=uuid.UUID(acc.task_id), task_buffer=fn_code + acc.payload)
        try:
            body = execute_task(
                messagepack.pack(task),
                uuid.UUID(acc.task_id),
                uuid.UUID(acc.endpoint_id),
                run_dir=self._run_dir,
                result_serializers=rec.result_serializers,
            )
        except Exception as exc:  # execute_task catches user errors; this is a harness bug
            log.exception("fake globus: execute_task failed for %s", acc.task_id)
            body = result_body(acc.task_id, repr(exc), error=True)
        self._complete(acc.task_id, _unpack_result(body), body, wait=False)

    def _complete(self, task_id: str, result: Result, body: bytes, *, wait: bool) -> None:
        with self._cond:
            rec = self._tasks.get(task_id)
            if rec is None:
                raise KeyError(f"unknown task {task_id}")
            rec.complete(result)
            group = self._groups[rec.accepted.task_group_id]
            publish = group.queue_created
            self._cond.notify_all()
        if not publish:
            return  # no result queue requested: HTTP status only
        done = self._publisher.submit(
            _AmqpJob("publish", self.queue_name(group.task_group_id), body)
        )
        if wait:
            done.result(timeout=120)


def _unpack_result(body: bytes) -> Result:
    msg = messagepack.unpack(body)
    if not isinstance(msg, Result):
        raise TypeError(f"expected a Result message, got {type(msg).__name__}")
    return msg


def _retry_after(seconds: int | None) -> dict[str, str]:
    return {} if seconds is None else {"Retry-After": str(seconds)}


def _validate_tasks(tasks: object) -> dict[str, list[str]]:
    if not isinstance(tasks, dict) or not tasks:
        raise ApiError(400, "BAD_REQUEST", "tasks must map function ids to payload lists")
    out: dict[str, list[str]] = {}
    for fn_id, payloads in tasks.items():
        fid = _parse_uuid(fn_id, "function id")
        if not isinstance(payloads, list) or not all(isinstance(p, str) for p in payloads):
            raise ApiError(400, "BAD_REQUEST", f"tasks[{fid}] must be a list of strings")
        for p in payloads:
            if len(p) > MAX_PAYLOAD_CHARS:
                raise ApiError(
                    413, "TASK_PAYLOAD_TOO_LARGE", f"task payload of {len(p)} bytes exceeds 10 MB"
                )
        out[fid] = payloads
    return out


def _validate_serializers(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ApiError(400, "BAD_REQUEST", "result_serializers must be a list of strings")
    return value


# ---------------------------------------------------------------------- HTTP layer

_Route = tuple[str, re.Pattern[str], str]
_ROUTES: list[_Route] = [
    ("GET", re.compile(r"/v2/version"), "version"),
    ("POST", re.compile(r"/v3/functions"), "register_function"),
    ("POST", re.compile(r"/v3/endpoints/(?P<ep>[^/]+)/submit"), "submit"),
    ("GET", re.compile(r"/v2/get_amqp_result_connection_url"), "amqp_url"),
    ("GET", re.compile(r"/v2/tasks/(?P<task>[^/]+)"), "get_task"),
    ("POST", re.compile(r"/v2/batch_status"), "batch_status"),
    ("GET", re.compile(r"/v2/taskgroup/(?P<tg>[^/]+)"), "get_task_group"),
    ("GET", re.compile(r"/v2/endpoints/(?P<ep>[^/]+)/status"), "endpoint_status"),
    ("GET", re.compile(r"/v2/endpoints/(?P<ep>[^/]+)"), "get_endpoint"),
    ("GET", re.compile(r"/v2/endpoints"), "get_endpoints"),
    ("GET", re.compile(r"/v2/functions/(?P<fn>[^/]+)"), "get_function"),
]


def _dispatch(
    fake: FakeGlobus, route: str, groups: dict[str, str], query: dict[str, list[str]], body: JSON
) -> Any:
    handlers: dict[str, Callable[[], Any]] = {
        "version": lambda: fake._version(query),
        "register_function": lambda: fake._register_function(body),
        "submit": lambda: fake._submit(groups.get("ep", ""), body),
        "amqp_url": fake._amqp_url,
        "get_task": lambda: fake._get_task(groups.get("task", "")),
        "batch_status": lambda: fake._batch_status(body),
        "get_task_group": lambda: fake._get_task_group(groups.get("tg", "")),
        "endpoint_status": lambda: fake._endpoint_status(groups.get("ep", "")),
        "get_endpoint": lambda: fake._get_endpoint(groups.get("ep", "")),
        "get_endpoints": lambda: fake._get_endpoints(query),
        "get_function": lambda: fake._get_function(groups.get("fn", "")),
    }
    return handlers[route]()


def _control(fake: FakeGlobus, method: str, path: str, body: JSON) -> Any:
    """The test control plane under /_fake/ (no auth, no faults): for a fake in another process."""
    if (method, path) == ("GET", "/_fake/stats"):
        return fake.stats()
    if (method, path) == ("GET", "/_fake/accepted"):
        with fake._cond:
            return [asdict(a) for a in fake.accepted]
    if (method, path) == ("POST", "/_fake/control"):
        if "down" in body:
            fake.set_down(bool(body["down"]), body.get("retry_after"))
        if "fail_next" in body:
            fake.fail_next(**body["fail_next"])
        if "mode" in body:
            fake.set_mode(body["mode"])
        return fake.stats()
    if (method, path) == ("POST", "/_fake/publish_result"):
        fake.publish_result(str(body["task_id"]), str(body["data"]), bool(body.get("error")))
        return {"ok": True}
    if (method, path) == ("POST", "/_fake/endpoints"):
        return {"endpoint_id": fake.add_endpoint(body.get("endpoint_id"))}
    raise ApiError(404, "NOT_FOUND", f"no control route {method} {path}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], fake: FakeGlobus) -> None:
        self.fake = fake
        super().__init__(addr, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("fake globus: " + format, *args)

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        try:
            body = self._read_json()
            if url.path.startswith("/_fake/"):
                self._send(200, _control(fake, method, url.path, body))
                return
            route, groups = _match(method, url.path)
            fault = fake._count_and_fault(route)
            if fault is not None:
                self._send(*fault)
                return
            fake._check_auth(self.headers.get("Authorization"))
            self._send(200, _dispatch(fake, route, groups, parse_qs(url.query), body))
        except ApiError as exc:
            self._send(exc.status, exc.body())
        except Exception as exc:  # a bug in the fake must still answer, as a 500
            log.exception("fake globus: internal error")
            self._send(500, error_body(500, "INTERNAL_ERROR", repr(exc)))

    def _read_json(self) -> JSON:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        raw = self.rfile.read(length)
        try:
            data = json.loads(raw)
        except ValueError:
            raise ApiError(400, "BAD_REQUEST", "request body is not JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "BAD_REQUEST", "request body must be a JSON object")
        return data

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


def _match(method: str, path: str) -> tuple[str, dict[str, str]]:
    for m, pattern, name in _ROUTES:
        match = pattern.fullmatch(path)
        if match and m == method:
            return name, match.groupdict()
    raise ApiError(404, "NOT_FOUND", f"no route {method} {path}")


# ------------------------------------------------------------ SDK integration


def sdk_client(fake: FakeGlobus) -> Client:
    """A real globus_compute_sdk.Client talking to `fake` with its static token.

    The SDK only knows fixed environment URLs, so its web-service URL lookup
    is replaced while the Client is built (the URL is read once, in __init__).
    """
    from unittest import mock

    import globus_sdk
    from globus_compute_sdk import Client

    with mock.patch(
        "globus_compute_sdk.sdk.client.get_web_service_url", return_value=fake.base_url
    ):
        return Client(authorizer=globus_sdk.AccessTokenAuthorizer(fake.token))


def reset_sdk_executor_state(timeout: float = 30.0) -> None:
    """Stop the SDK's process-wide AMQP result watchers and forget its default task group.

    Executor.shutdown() leaves the watcher thread (and its AMQP connection)
    running until interpreter exit, and later Executors reuse the last task
    group; tests call this in teardown, before the broker or fake goes away.
    """
    from globus_compute_sdk import Executor
    from globus_compute_sdk.sdk import executor as sdk_executor

    watchers = list(sdk_executor._RESULT_WATCHERS.values())
    for rw in watchers:
        rw.shutdown(wait=False, cancel_futures=True)
    for rw in watchers:
        rw.join(timeout)
        if rw.is_alive():
            raise TimeoutError(f"SDK result watcher {rw!r} did not stop in {timeout}s")
    sdk_executor._RESULT_WATCHERS.clear()
    Executor._default_task_group_id = None


# ------------------------------------------------------------------- standalone


def main(argv: Iterable[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; first stdout line is the base URL, second a JSON info line."""
    ap = argparse.ArgumentParser(prog="python -m tests.support.fake_globus")
    ap.add_argument("--amqp-url", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default="fake-globus-token")
    ap.add_argument("--mode", choices=("execute", "manual"), default="execute")
    ap.add_argument("--queue-prefix", default="fxfake.")
    ap.add_argument("--endpoint-id", default=None)
    ap.add_argument("--connection-url", default=None, help="AMQP URL handed to clients")
    args = ap.parse_args(list(argv) if argv is not None else None)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    fake = FakeGlobus(
        args.amqp_url,
        token=args.token,
        host=args.host,
        port=args.port,
        mode=args.mode,
        queue_prefix=args.queue_prefix,
        endpoint_id=args.endpoint_id,
        connection_url=args.connection_url,
    )
    with fake:
        info = {"endpoint_id": fake.endpoint_id, "token": fake.token}
        info["queue_prefix"] = fake.queue_prefix
        sys.stdout.write(f"{fake.base_url}\n{json.dumps(info)}\n")
        sys.stdout.flush()
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
