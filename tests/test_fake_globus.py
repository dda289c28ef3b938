"""Proof that the test infrastructure is faithful: the real SDK runs against the fake.

If globus-compute-sdk 4.19.0's own Client and Executor get their results,
failures and errors from `FakeGlobus` + a private RabbitMQ node, then the
fake speaks the real wire (HTTP JSON, queue naming, messagepack Results) and
gateway tests built on it test against the real protocol. The broker fault
helpers are checked here too, so a fault test that passes means the fault
really happened.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
import requests
from globus_compute_sdk import Client, Executor
from globus_compute_sdk.errors import TaskExecutionFailed
from globus_sdk import GlobusAPIError

from tests.support.fake_globus import (
    FakeGlobus,
    reset_sdk_executor_state,
    result_body,
    sdk_client,
)
from tests.support.fixtures import fake_globus, fresh_rabbit, rabbit  # noqa: F401
from tests.support.rabbitmq import RabbitNode

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60


def double(x: int) -> int:
    """A task that succeeds."""
    return 2 * x


def boom(message: str) -> None:
    """A task that raises on the endpoint."""
    raise ValueError(message)


@pytest.fixture
def sdk(fake_globus: FakeGlobus) -> Iterator[Client]:  # noqa: F811
    """A real SDK Client on the fake; its AMQP watchers are stopped in teardown."""
    reset_sdk_executor_state()
    yield sdk_client(fake_globus)
    reset_sdk_executor_state()


def _http(fake: FakeGlobus, method: str, path: str, body: object = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {fake.token}"}
    return requests.request(method, fake.base_url + path, json=body, headers=headers, timeout=30)


def _consume_one(url: str, queue_name: str) -> bytes | None:
    """Fetch and ack one message from a queue, or None if it is empty."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        method, _props, body = conn.channel().basic_get(queue_name, auto_ack=True)
        return body if method is not None else None
    finally:
        conn.close()


def _publish_persistent(url: str, queue_name: str, body: bytes) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.queue_declare(queue_name, durable=True)
        ch.confirm_delivery()
        ch.basic_publish("", queue_name, body, pika.BasicProperties(delivery_mode=2))
    finally:
        conn.close()


# ------------------------------------------------------------ real SDK vs fake


def test_sdk_executor_gets_results_and_failures_over_amqp(
    fake_globus: FakeGlobus,  # noqa: F811
    rabbit: RabbitNode,  # noqa: F811
    sdk: Client,
) -> None:
    with Executor(endpoint_id=fake_globus.endpoint_id, client=sdk) as ex:
        futures = [ex.submit(double, i) for i in range(5)]
        failing = ex.submit(boom, "kaput-42")
        assert [f.result(timeout=TIMEOUT) for f in futures] == [0, 2, 4, 6, 8]
        with pytest.raises(TaskExecutionFailed) as err:
            failing.result(timeout=TIMEOUT)
        task_group = ex.task_group_id

    assert "ValueError: kaput-42" in err.value.remote_data
    # The Executor never polled HTTP for results: they all came over AMQP.
    routes = fake_globus.requests_by_route
    assert routes["get_task"] == routes["batch_status"] == 0
    assert routes["amqp_url"] >= 1
    assert fake_globus.queue_name(task_group) in rabbit.list_queues()
    # Every payload was submitted exactly once, all to our endpoint.
    assert set(fake_globus.submitted_payloads().values()) == {1}
    assert fake_globus.tasks_per_endpoint[fake_globus.endpoint_id] == 6
    assert {f.task_id for f in [*futures, failing]} == {a.task_id for a in fake_globus.accepted}


def test_sdk_http_status_routes_agree_with_results(
    fake_globus: FakeGlobus,  # noqa: F811
    sdk: Client,
) -> None:
    with Executor(endpoint_id=fake_globus.endpoint_id, client=sdk) as ex:
        ok = ex.submit(double, 21)
        bad = ex.submit(boom, "http-kaput")
        assert ok.result(timeout=TIMEOUT) == 42
        with pytest.raises(TaskExecutionFailed):
            bad.result(timeout=TIMEOUT)
        task_group = ex.task_group_id
    fake_globus.wait_for_completed(2, timeout=TIMEOUT)

    assert sdk.get_result(ok.task_id) == 42
    with pytest.raises(TaskExecutionFailed, match="http-kaput"):
        sdk.get_task(bad.task_id)
    batch = sdk.get_batch_result([ok.task_id])
    assert batch[ok.task_id]["result"] == 42 and batch[ok.task_id]["pending"] is False
    assert sdk.get_endpoint_status(fake_globus.endpoint_id)["status"] == "online"

    # reload_tasks: GET /v2/taskgroup + POST /v2/batch_status, resolved without AMQP
    reset_sdk_executor_state()
    with Executor(endpoint_id=fake_globus.endpoint_id, client=sdk, task_group_id=task_group) as ex:
        reloaded = {f.task_id: f for f in ex.reload_tasks()}
    assert set(reloaded) == {ok.task_id, bad.task_id}
    assert reloaded[ok.task_id].result(timeout=0) == 42
    assert isinstance(reloaded[bad.task_id].exception(timeout=0), TaskExecutionFailed)


def test_manual_mode_test_publishes_results(
    fake_globus: FakeGlobus,  # noqa: F811
    sdk: Client,
) -> None:
    fake_globus.set_mode("manual")
    with Executor(endpoint_id=fake_globus.endpoint_id, client=sdk) as ex:
        ok = ex.submit(double, 1)
        bad = ex.submit(boom, "never-run")
        # Accepted in submission order (the futures may not know their ids yet).
        ok_task, bad_task = fake_globus.wait_for_tasks(2, timeout=TIMEOUT)
        assert fake_globus.task_doc(ok_task.task_id)["status"] == "waiting-for-ep"
        fake_globus.publish_result(ok_task.task_id, "11\n" + json.dumps({"answer": 7}))
        fake_globus.publish_result(bad_task.task_id, "Traceback: injected by test", error=True)
        assert ok.result(timeout=TIMEOUT) == {"answer": 7}
        with pytest.raises(TaskExecutionFailed, match="injected by test"):
            bad.result(timeout=TIMEOUT)
    assert (ok.task_id, bad.task_id) == (ok_task.task_id, bad_task.task_id)
    assert fake_globus.task_doc(bad_task.task_id)["status"] == "failed"
    assert fake_globus.stats()["tasks_completed"] == 2


def test_result_body_is_a_real_result_message() -> None:
    from globus_compute_common import messagepack
    from globus_compute_common.messagepack.message_types import Result

    tid = uuid.uuid4()
    msg = messagepack.unpack(result_body(tid, "11\n1", error=True))
    assert isinstance(msg, Result)
    assert msg.task_id == tid and msg.data == "11\n1" and msg.is_error
    assert msg.error_details is not None and msg.error_details.code == "RemoteExecutionError"


# ------------------------------------------------------------- service refusals


def test_unknown_client_chosen_task_group_is_refused(
    fake_globus: FakeGlobus,  # noqa: F811
    sdk: Client,
) -> None:
    fn_id = sdk.register_function(double)
    batch = sdk.create_batch(task_group_id=uuid.uuid4(), create_websocket_queue=True)
    batch.add(fn_id, args=(1,))
    with pytest.raises(GlobusAPIError) as err:
        sdk.batch_run(fake_globus.endpoint_id, batch)
    assert err.value.http_status == 404 and err.value.code == "TASK_GROUP_NOT_FOUND"
    assert fake_globus.accepted == []

    # ... while an id the service assigned is accepted again
    first = sdk.create_batch()
    first.add(fn_id, args=(2,))
    tg = sdk.batch_run(fake_globus.endpoint_id, first)["task_group_id"]
    again = sdk.create_batch(task_group_id=tg)
    again.add(fn_id, args=(3,))
    assert sdk.batch_run(fake_globus.endpoint_id, again)["task_group_id"] == tg


def test_submit_refusals_use_the_error_body(
    fake_globus: FakeGlobus,  # noqa: F811
    sdk: Client,
) -> None:
    fn_id = sdk.register_function(double)
    payload = sdk.create_batch()
    payload.add(fn_id, args=(1,))
    body = payload.prepare()

    r = _http(fake_globus, "POST", f"/v3/endpoints/{uuid.uuid4()}/submit", body)
    assert r.status_code == 404 and r.json()["code"] == "ENDPOINT_NOT_FOUND"
    r = _http(
        fake_globus,
        "POST",
        f"/v3/endpoints/{fake_globus.endpoint_id}/submit",
        {**body, "tasks": {str(uuid.uuid4()): ["x"]}},
    )
    assert r.status_code == 404 and r.json()["code"] == "FUNCTION_NOT_FOUND"
    big = {**body, "tasks": {fn_id: ["x" * (10 * 1024 * 1024 + 1)]}}
    r = _http(fake_globus, "POST", f"/v3/endpoints/{fake_globus.endpoint_id}/submit", big)
    err = r.json()
    assert r.status_code == err["http_status_code"] == 413
    assert err["code"] == "TASK_PAYLOAD_TOO_LARGE" and err["message"] == err["reason"]
    r = requests.get(fake_globus.base_url + "/v2/version?service=all", timeout=30)
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    assert fake_globus.accepted == [] and fake_globus.submits_accepted == 0


# -------------------------------------------------------------- HTTP fault knobs


def test_fail_next_answers_429_with_retry_after_and_sdk_honours_it(
    fake_globus: FakeGlobus,  # noqa: F811
    sdk: Client,
) -> None:
    fake_globus.fail_next(1, status=429, retry_after=3)
    r = _http(fake_globus, "GET", "/v2/version?service=all")
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert _http(fake_globus, "GET", "/v2/version?service=all").status_code == 200

    fake_globus.fail_next(2, status=429, retry_after=1)
    began = time.monotonic()
    status = sdk.get_endpoint_status(fake_globus.endpoint_id)
    assert status["status"] == "online"
    assert time.monotonic() - began >= 2.0  # slept Retry-After twice
    assert fake_globus.faults_injected == 3
    assert fake_globus.requests_by_route["endpoint_status"] == 3


def test_set_down_answers_503_until_up(fake_globus: FakeGlobus) -> None:  # noqa: F811
    fake_globus.set_down(True)
    r = _http(fake_globus, "GET", "/v2/get_amqp_result_connection_url")
    assert r.status_code == 503 and r.json()["code"] == "SERVICE_UNAVAILABLE"
    fake_globus.set_down(False)
    r = _http(fake_globus, "GET", "/v2/get_amqp_result_connection_url")
    assert r.json() == {"connection_url": fake_globus.connection_url, "queue_prefix": "fxfake."}


# ------------------------------------------------------------ broker fault knobs


def test_stop_app_start_app_keeps_persistent_message_in_durable_queue(
    rabbit: RabbitNode,  # noqa: F811
) -> None:
    q = f"fxtest.durable.{uuid.uuid4()}"
    _publish_persistent(rabbit.url, q, b"survivor")
    try:
        rabbit.stop_app()
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika.BlockingConnection(pika.URLParameters(rabbit.url))
    finally:
        rabbit.start_app()
    assert rabbit.list_queues()[q] == (1, 0)
    assert _consume_one(rabbit.url, q) == b"survivor"
    assert rabbit.list_queues()[q] == (0, 0)


def test_close_all_connections_drops_clients(rabbit: RabbitNode) -> None:  # noqa: F811
    conn = pika.BlockingConnection(pika.URLParameters(rabbit.url))
    try:
        rabbit.close_all_connections()
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker):
            conn.process_data_events(time_limit=TIMEOUT)
    finally:
        if conn.is_open:
            conn.close()


def test_kill_then_start_recovers_durable_queue(fresh_rabbit: RabbitNode) -> None:  # noqa: F811
    _publish_persistent(fresh_rabbit.url, "fxtest.crash", b"after-crash")
    # The confirm means the message is on disk; the queue's declaration goes to
    # Mnesia's log asynchronously, and a kill within milliseconds can lose it.
    assert fresh_rabbit.ctl("eval", "mnesia:sync_log().").strip() == "ok"
    fresh_rabbit.kill()
    assert not fresh_rabbit.is_running()
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(pika.URLParameters(fresh_rabbit.url))
    fresh_rabbit.start()
    assert fresh_rabbit.list_queues()["fxtest.crash"] == (1, 0)
    assert _consume_one(fresh_rabbit.url, "fxtest.crash") == b"after-crash"


def test_fake_publisher_rides_out_broker_restart(
    fake_globus: FakeGlobus,  # noqa: F811
    rabbit: RabbitNode,  # noqa: F811
) -> None:
    fake_globus.set_mode("manual")
    fn = _http(fake_globus, "POST", "/v3/functions", {"function_code": "3\nabc"}).json()
    sub = _http(
        fake_globus,
        "POST",
        f"/v3/endpoints/{fake_globus.endpoint_id}/submit",
        {"create_queue": True, "tasks": {fn["function_uuid"]: ["opaque"]}},
    ).json()
    task_id = sub["tasks"][fn["function_uuid"]][0]
    q = fake_globus.queue_name(sub["task_group_id"])

    errors: queue.Queue[BaseException | None] = queue.Queue()

    def publish() -> None:
        try:
            fake_globus.publish_result(task_id, "11\n1")
            errors.put(None)
        except BaseException as exc:  # handed to the test thread
            errors.put(exc)

    rabbit.stop_app()
    try:
        threading.Thread(target=publish, daemon=True).start()
    finally:
        rabbit.start_app()
    assert errors.get(timeout=TIMEOUT) is None
    assert rabbit.list_queues()[q] == (1, 0)
    assert _consume_one(rabbit.url, q) == result_body(task_id, "11\n1")


# ------------------------------------------------------------------ standalone


def test_fake_runs_as_a_separate_process(rabbit: RabbitNode) -> None:  # noqa: F811
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tests.support.fake_globus", "--amqp-url", rabbit.url]
    proc = subprocess.Popen(
        [*cmd, "--port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()

    def read_stdout() -> None:
        for line in proc.stdout or []:
            lines.put(line)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        base_url = lines.get(timeout=TIMEOUT).strip()
        info = json.loads(lines.get(timeout=TIMEOUT))
        headers = {"Authorization": f"Bearer {info['token']}"}
        r = requests.get(f"{base_url}/v2/version?service=all", headers=headers, timeout=30)
        assert r.status_code == 200 and {"min_sdk_version", "min_ep_version"} <= set(r.json())
        r = requests.get(
            f"{base_url}/v2/endpoints/{info['endpoint_id']}/status", headers=headers, timeout=30
        )
        assert r.json()["status"] == "online"
        assert requests.get(f"{base_url}/_fake/stats", timeout=30).json()["requests_received"] == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 0
        reader.join(timeout=TIMEOUT)
