"""The Globus Compute upstream against the fake web service and a real RabbitMQ."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from client import Client, Executor, TaskExecutionFailed
from gateway.store.records import PendingTask
from tests.daemon import DaemonProcess
from tests.support.fake_globus import FakeGlobus, result_body
from tests.support.fixtures import fake_globus, rabbit  # noqa: F401
from tests.support.rabbitmq import RabbitNode


def double(x: int) -> int:
    return x * 2


def fails(x: int) -> int:
    raise ValueError(f"remote failure {x}")


@pytest.fixture
def gdaemon(tmp_path: Path, fake_globus: FakeGlobus) -> Iterator[DaemonProcess]:  # noqa: F811
    """A daemon whose Globus upstream is the fake service."""
    d = DaemonProcess(
        tmp_path / "state",
        extra_env=fake_globus.daemon_env(),
    )
    d.start()
    yield d
    assert d.stop() in (0, -9), d.log()


def assert_each_task_submitted_once(fake: FakeGlobus) -> None:
    counts = Counter((a.function_id, a.payload) for a in fake.accepted)
    assert counts and max(counts.values()) == 1, counts.most_common(3)


def quarantined(daemon: DaemonProcess) -> int:
    with Client(address=daemon.address) as c:
        return int(c.status()["quarantined_messages"])


def test_results_and_remote_exceptions_stream_back(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
) -> None:
    with Executor(endpoint_id=fake_globus.endpoint_id, address=gdaemon.address) as ex:
        futures = [ex.submit(double, i) for i in range(50)]
        bad = ex.submit(fails, 7)
        assert [f.result(timeout=60) for f in futures] == [i * 2 for i in range(50)]
        with pytest.raises((ValueError, TaskExecutionFailed), match="remote failure 7"):
            bad.result(timeout=60)
    assert all(f.upstream_task_id for f in futures)
    assert_each_task_submitted_once(fake_globus)
    with Client(address=gdaemon.address) as c:
        line = c.status()["upstream_status"]["globus"]
    assert "51 submitted" in line and "broker connected" in line, line
    # the same function was registered once, not once per task
    assert fake_globus.requests_by_route["register_function"] == 2  # double, fails


def test_service_down_at_submit_then_up_submits_each_task_once(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
) -> None:
    fake_globus.set_down(True)
    with Executor(endpoint_id=fake_globus.endpoint_id, address=gdaemon.address) as ex:
        futures = [ex.submit(double, i) for i in range(100)]
        # accepted by the daemon while the service answers 503
        fake_globus.wait_for(lambda: fake_globus.requests_received >= 3)
        assert not any(f.done() for f in futures)
        fake_globus.set_down(False)
        assert [f.result(timeout=120) for f in futures] == [i * 2 for i in range(100)]
    assert len(fake_globus.accepted) == 100
    assert_each_task_submitted_once(fake_globus)


def test_429_with_retry_after_is_honoured(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
) -> None:
    with Executor(endpoint_id=fake_globus.endpoint_id, address=gdaemon.address) as ex:
        assert ex.submit(double, 1).result(timeout=60) == 2  # warm: function registered
        fake_globus.fail_next(2, status=429, retry_after=1)
        fut = ex.submit(double, 2)
        assert fut.result(timeout=60) == 4
    assert fake_globus.faults_injected == 2
    gaps = fake_globus.request_gaps_after_faults()
    assert gaps and min(gaps) >= 0.95, gaps  # waited Retry-After before asking again


def test_a_4xx_fails_exactly_the_tasks_it_concerns(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
) -> None:
    unknown_endpoint = str(uuid.uuid4())  # the fake refuses it with a 4xx
    with Executor(endpoint_id=unknown_endpoint, address=gdaemon.address) as bad_ex:
        refused = bad_ex.submit(double, 1)
        exc = refused.exception(timeout=60)
    assert isinstance(exc, TaskExecutionFailed)
    assert "HTTP 4" in exc.remote_data
    with Executor(endpoint_id=fake_globus.endpoint_id, address=gdaemon.address) as ex:
        assert ex.submit(double, 5).result(timeout=60) == 10


def _publish_raw(rabbit: RabbitNode, queue: str, bodies: list[bytes]) -> None:  # noqa: F811
    conn = pika.BlockingConnection(pika.URLParameters(rabbit.url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        for body in bodies:
            channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    finally:
        conn.close()


def test_garbled_unknown_and_oversized_messages_are_kept_and_the_stream_goes_on(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
    rabbit: RabbitNode,  # noqa: F811
) -> None:
    with Executor(endpoint_id=fake_globus.endpoint_id, address=gdaemon.address) as ex:
        assert ex.submit(double, 1).result(timeout=60) == 2
        with Client(address=gdaemon.address) as c:
            upstream_group = c.get_task_group(ex.task_group_id)["upstream_task_group_id"]
        queue = fake_globus.queue_name(upstream_group)
        _publish_raw(
            rabbit,
            queue,
            [
                b"\x01{not json at all",
                result_body(str(uuid.uuid4()), "00\nabc"),
                b"\x01" + b"x" * (13 * 1024 * 1024),
            ],
        )
        futures = [ex.submit(double, i) for i in range(20)]
        assert [f.result(timeout=60) for f in futures] == [i * 2 for i in range(20)]
        ready, unacked = rabbit.list_queues()[queue]
    assert quarantined(gdaemon) == 3
    assert (ready, unacked) == (0, 0)
    log = gdaemon.log()
    assert "undecodable message" in log and "unknown task" in log and "over the" in log


def test_broker_restart_mid_stream_delivers_every_result_once(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
    rabbit: RabbitNode,  # noqa: F811
) -> None:
    n = 2000
    fake_globus.set_mode("manual")
    with Executor(endpoint_id=fake_globus.endpoint_id, address=gdaemon.address) as ex:
        futures = [ex.submit(double, i) for i in range(n)]
        accepted = fake_globus.wait_for_tasks(n, timeout=120)
        for i, task in enumerate(accepted[: n // 2]):
            fake_globus.publish_result(task.task_id, f"00\n{_b64(i * 2)}")
        rabbit.stop_app()
        rabbit.start_app()
        for i, task in enumerate(accepted[n // 2 :], start=n // 2):
            fake_globus.publish_result(task.task_id, f"00\n{_b64(i * 2)}")
        done, not_done = concurrent.futures.wait(futures, timeout=180)
        assert not not_done
        results = [f.result() for f in futures]
    by_upstream = {t.task_id: i for i, t in enumerate(accepted)}
    assert sorted(results) == [i * 2 for i in range(n)]
    assert all(by_upstream[str(f.upstream_task_id)] * 2 == f.result() for f in futures)
    queue = fake_globus.queue_name(accepted[0].task_group_id)
    assert rabbit.list_queues()[queue] == (0, 0)


def test_daemon_killed_mid_stream_then_every_result_arrives(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
    rabbit: RabbitNode,  # noqa: F811
) -> None:
    n = 1000
    fake_globus.set_mode("manual")
    with Client(address=gdaemon.address) as c:
        fid = c.register_function(double)
        batch = c.create_batch()
        for i in range(n):
            batch.add(fid, fake_globus.endpoint_id, args=(i,))
        c.batch_run(batch)
    accepted = fake_globus.wait_for_tasks(n, timeout=120)
    for i, task in enumerate(accepted[: n // 2]):
        fake_globus.publish_result(task.task_id, f"00\n{_b64(i)}")
    gdaemon.kill()
    for i, task in enumerate(accepted[n // 2 :], start=n // 2):
        fake_globus.publish_result(task.task_id, f"00\n{_b64(i)}")
    gdaemon.start()
    with Executor(endpoint_id=fake_globus.endpoint_id, address=gdaemon.address) as ex:
        futures = ex.reload_tasks(batch.task_group_id)
        results = sorted(f.result(timeout=120) for f in futures)
    assert results == list(range(n))
    queue = fake_globus.queue_name(accepted[0].task_group_id)
    assert rabbit.list_queues()[queue] == (0, 0)
    assert_each_task_submitted_once(fake_globus)


def _b64(value: object) -> str:
    from fxgate_contract.serialize import serialize_data

    return serialize_data(value)[3:]


def test_broker_unreachable_falls_back_to_http_polling_then_streams_again(
    tmp_path: Path,
    fake_globus: FakeGlobus,  # noqa: F811
    rabbit: RabbitNode,  # noqa: F811
) -> None:
    d = DaemonProcess(
        tmp_path / "state",
        extra_env={
            "FXGATE_GLOBUS_BASE_URL": fake_globus.base_url,
            "FXGATE_GLOBUS_TOKEN": fake_globus.token,
            "FXGATE_GLOBUS_BROKER_FALLBACK_S": "1",
            "FXGATE_GLOBUS_POLL_INTERVAL_S": "0.2",
        },
    )
    d.start()
    try:
        with Executor(endpoint_id=fake_globus.endpoint_id, address=d.address) as ex:
            assert ex.submit(double, 1).result(timeout=60) == 2  # streaming
            rabbit.stop_app()
            try:
                futures = [ex.submit(double, i) for i in range(20)]
                # no future fails while the broker is away: results come over HTTP
                assert [f.result(timeout=60) for f in futures] == [i * 2 for i in range(20)]
            finally:
                rabbit.start_app()
            assert ex.submit(double, 3).result(timeout=60) == 6
        assert "results fetched over HTTP" in d.log()
    finally:
        assert d.stop() == 0, d.log()


class _TokenServer:
    """A stand-in for Globus Auth's token endpoint (client-credentials grant)."""

    def __init__(self, token: str) -> None:
        import http.server
        import threading

        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                form = self.rfile.read(length).decode()
                outer.requests.append((self.headers.get("Authorization", ""), form))
                body = json.dumps({"access_token": token, "expires_in": 3600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2/oauth2/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("source", ["token_file", "client_credentials"])
def test_token_from_a_file_or_the_client_credentials_grant(
    tmp_path: Path,
    fake_globus: FakeGlobus,  # noqa: F811
    source: str,
) -> None:
    auth = _TokenServer(fake_globus.token)
    env = {"FXGATE_GLOBUS_BASE_URL": fake_globus.base_url}
    if source == "token_file":
        token_file = tmp_path / "token"
        token_file.write_text(fake_globus.token + "\n")
        env["FXGATE_GLOBUS_TOKEN_FILE"] = str(token_file)
    else:
        env |= {
            "FXGATE_GLOBUS_CLIENT_ID": "svc-id",
            "FXGATE_GLOBUS_CLIENT_SECRET": "svc-secret",
            "FXGATE_GLOBUS_AUTH_URL": auth.url,
        }
    d = DaemonProcess(tmp_path / "state", extra_env=env)
    d.start()
    try:
        with Executor(endpoint_id=fake_globus.endpoint_id, address=d.address) as ex:
            assert ex.submit(double, 4).result(timeout=60) == 8
    finally:
        auth.close()
        assert d.stop() == 0, d.log()
    if source == "client_credentials":
        assert auth.requests, "the token endpoint was never asked"
        header, form = auth.requests[0]
        assert header == "Basic " + base64.b64encode(b"svc-id:svc-secret").decode()
        assert "grant_type=client_credentials" in form


class _NoBroker:
    """A ResultSource that receives nothing: this test looks at submits only."""

    down_since: float | None = None
    received = 0

    def __init__(self) -> None:
        self.groups: set[str] = set()

    def start(self, deliver: Any, quarantine: Any, submits_in_flight: Any) -> None:
        pass

    def watch(self, upstream_group_id: str) -> None:
        self.groups.add(upstream_group_id)

    def unwatch(self, upstream_group_id: str) -> None:
        self.groups.discard(upstream_group_id)

    def watched(self) -> set[str]:
        return set(self.groups)

    def stop(self) -> None:
        pass


def test_submit_queue_takes_groups_in_turn_creates_each_once_and_forgets_cancelled(
    tmp_path: Path,
    fake_globus: FakeGlobus,  # noqa: F811
) -> None:
    """Seen from outside: what reaches the service, and what cancel can still withdraw."""
    from gateway.config import GlobusSettings
    from gateway.store.database import Store
    from gateway.upstreams.globus.upstream import SUBMIT_THREADS, GlobusUpstream
    from gateway.upstreams.globus.web import WebService
    from tests.upstream_contract import Harness

    fake = fake_globus
    fake.set_mode("manual")  # nothing runs: only submits are looked at
    settings = GlobusSettings(
        base_url=fake.base_url, token=fake.token, batch_size=2, batch_interval_ms=0, http_attempts=1
    )
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.open()
    h = Harness(store, fake.endpoint_id)
    h.upstream = "globus"
    broker = _NoBroker()
    up = GlobusUpstream(settings, WebService(settings), broker)
    up.start(h.ports)

    def group_tasks(xs: range) -> list[PendingTask]:
        h.group_id = str(uuid.uuid4())
        return h.tasks(double, *[(x,) for x in xs])

    payload_of: dict[str | None, int] = {}  # payload -> x

    def accepted_xs() -> list[list[int]]:
        """x of each accepted task, by upstream group, in the order accepted."""
        by_group: dict[str, list[int]] = {}
        for a in fake.accepted:
            by_group.setdefault(a.task_group_id, []).append(payload_of[a.payload])
        return list(by_group.values())

    try:
        g1 = group_tasks(range(0, 7))
        g2 = group_tasks(range(100, 103))
        xs = [*range(7), *range(100, 103)]
        payload_of.update((t.payload, x) for t, x in zip(g1 + g2, xs, strict=True))
        # The first request (registering the function) is refused: the batch is tried
        # again, before the rest of its group.
        fake.fail_next(1, status=429, retry_after=0)
        fake.hold_submits()
        up.enqueue(g1)
        assert fake.wait_for(lambda: fake.submits_held == 1)
        # g1's first batch is at the service: the rest of g1 waits for its group to
        # exist there; only what waits can be withdrawn.
        assert up.cancel([g1[0].task_id, g1[3].task_id, str(uuid.uuid4())]) == {g1[3].task_id}
        up.enqueue(g2)  # another new group: its first batch goes out beside g1's
        assert fake.wait_for(lambda: fake.submits_held == 2)
        fake.release_submits()
        fake.wait_for_tasks(9)
        assert fake.faults_injected == 1
        first, second = sorted(accepted_xs())  # one upstream group for each of ours
        assert first[:2] == [0, 1]  # the retried batch went first, and alone
        assert sorted(first) == [0, 1, 2, 4, 5, 6] and sorted(second) == [100, 101, 102]

        # Both groups exist upstream: their batches go side by side, groups in turn.
        fake.hold_submits()
        h.group_id = g1[0].group_id
        g1_more = h.tasks(double, *[(x,) for x in range(10, 18)])
        h.group_id = g2[0].group_id
        g2_more = h.tasks(double, (110,), (111,))
        up.enqueue(g1_more + g2_more)
        assert fake.wait_for(lambda: fake.submits_held == SUBMIT_THREADS)
        # Taken in turn: g1, g2, g1, g1; what still waits is g1's last batch.
        everything = [t.task_id for t in g1_more + g2_more]
        assert up.cancel(everything) == {g1_more[6].task_id, g1_more[7].task_id}
        fake.release_submits()
        fake.wait_for_tasks(9 + 8)
    finally:
        fake.release_submits()
        up.stop()
        store.close()
    assert len(fake.accepted) == 9 + 8
    assert_each_task_submitted_once(fake)
    assert len(broker.watched()) == 2
