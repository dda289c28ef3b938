"""Bad input gets a clear gRPC error, and the daemon goes on serving everyone else."""

from __future__ import annotations

import uuid

import grpc
import pytest

from client import Client, Executor, RequestRefused, TaskExecutionFailed
from client._proto import gateway_pb2 as pb
from client._proto import gateway_pb2_grpc as pb_grpc
from client.serialize import pack_buffers, pack_function, pack_payload
from tests.daemon import DaemonProcess


def double(x: int) -> int:
    return x * 2


@pytest.fixture
def stub(daemon: DaemonProcess) -> pb_grpc.GatewayStub:
    channel = grpc.insecure_channel(
        daemon.address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    return pb_grpc.GatewayStub(channel)


def register_double(stub: pb_grpc.GatewayStub) -> str:
    response = stub.RegisterFunction(
        pb.RegisterFunctionRequest(function_name="double", function_code=pack_function(double))
    )
    return str(response.function_id)


@pytest.fixture
def function_id(stub: pb_grpc.GatewayStub) -> str:
    return register_double(stub)


def still_serving(daemon: DaemonProcess) -> None:
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        assert ex.submit(double, 21).result(timeout=60) == 42


def refusal(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


def submit(stub: pb_grpc.GatewayStub, function_id: str, **fields: object) -> object:
    defaults: dict[str, object] = {
        "endpoint_id": "local",
        "tasks": [pb.TaskSpec(function_id=function_id, payload=pack_payload((1,), {}))],
    }
    return lambda: stub.Submit(pb.SubmitRequest(**(defaults | fields)))  # type: ignore[arg-type]


def test_unknown_endpoint_id(
    daemon: DaemonProcess, stub: pb_grpc.GatewayStub, function_id: str
) -> None:
    err = refusal(submit(stub, function_id, endpoint_id=str(uuid.uuid4())))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "unknown endpoint id" in err.details()
    err = refusal(submit(stub, function_id, endpoint_id="not-a-uuid"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a UUID" in err.details()
    still_serving(daemon)


def test_unknown_endpoint_fails_the_executor_futures_clearly(daemon: DaemonProcess) -> None:
    with Executor(endpoint_id=str(uuid.uuid4()), address=daemon.address) as ex:
        exc = ex.submit(double, 1).exception(timeout=60)
    assert isinstance(exc, RequestRefused)
    assert exc.code == "NOT_FOUND"
    still_serving(daemon)


def test_unknown_task_group_on_reload(daemon: DaemonProcess) -> None:
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        with pytest.raises(RequestRefused) as info:
            ex.reload_tasks(str(uuid.uuid4()))
    assert info.value.code == "NOT_FOUND"
    assert "unknown task group" in info.value.message
    with Client(address=daemon.address) as c, pytest.raises(RequestRefused):
        c.get_task_group("nonsense")
    still_serving(daemon)


def test_unknown_task_ids(daemon: DaemonProcess, client: Client) -> None:
    with pytest.raises(RequestRefused, match="NOT_FOUND"):
        client.get_result(str(uuid.uuid4()))
    with pytest.raises(RequestRefused, match="NOT_FOUND"):
        client.cancel([str(uuid.uuid4())])
    still_serving(daemon)


def test_payload_over_the_limit(
    daemon: DaemonProcess, stub: pb_grpc.GatewayStub, function_id: str
) -> None:
    big = pack_payload(("x" * 11_000_000,), {})
    err = refusal(
        submit(stub, function_id, tasks=[pb.TaskSpec(function_id=function_id, payload=big)])
    )
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "over the limit of 10000000 bytes" in err.details()
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        small = ex.submit(double, 2)
        exc = ex.submit(double, "y" * 11_000_000).exception(timeout=60)
        assert small.result(timeout=60) == 4  # other tasks are not affected
    assert isinstance(exc, RequestRefused) and exc.code == "RESOURCE_EXHAUSTED"
    still_serving(daemon)


@pytest.mark.parametrize(
    "code",
    [
        "not a packed buffer",
        "12\nnot base64!!",
        pack_buffers(["zz\nwhatever"]),
        pack_buffers(["00\n" + "gASVAAAA"]),  # data, not code
        "99\n01\nabc",  # truncated
    ],
)
def test_bytes_that_are_not_a_serialized_function(
    daemon: DaemonProcess, stub: pb_grpc.GatewayStub, code: str
) -> None:
    err = refusal(
        lambda: stub.RegisterFunction(
            pb.RegisterFunctionRequest(function_name="f", function_code=code)
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "function_code" in err.details()
    still_serving(daemon)


def test_well_framed_but_garbled_function_fails_only_its_task(
    daemon: DaemonProcess, stub: pb_grpc.GatewayStub
) -> None:
    garbled = pack_buffers(["01\n!!!! this is not dill !!!!"])
    fid = stub.RegisterFunction(
        pb.RegisterFunctionRequest(function_name="g", function_code=garbled)
    )
    with Client(address=daemon.address) as c:
        batch = c.create_batch()
        batch.add(fid.function_id, "local", args=(1,))
        (task_id,) = c.batch_run(batch)
        with Executor(endpoint_id="local", address=daemon.address) as ex:
            (fut,) = ex.reload_tasks(batch.task_group_id)
            exc = fut.exception(timeout=60)
    assert isinstance(exc, TaskExecutionFailed)
    assert fut.task_id == task_id
    still_serving(daemon)


def test_malformed_requests(
    daemon: DaemonProcess, stub: pb_grpc.GatewayStub, function_id: str
) -> None:
    err = refusal(submit(stub, function_id, tasks=[]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = refusal(submit(stub, function_id, task_group_id="12"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = refusal(submit(stub, "no-such-function"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = refusal(
        submit(stub, function_id, tasks=[pb.TaskSpec(function_id=function_id, payload="3\n00\n")])
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected 2" in err.details()
    # bytes that are not a protobuf message at all
    channel = grpc.insecure_channel(daemon.address)
    raw = channel.unary_unary("/fxgate.v1.Gateway/Submit")
    err = refusal(lambda: raw(b"\xff\xff\xff\xff garbage"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request is not a valid message" in err.details()
    err = refusal(lambda: channel.unary_unary("/fxgate.v1.Gateway/NoSuchMethod")(b""))
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    still_serving(daemon)


def test_retried_submit_with_same_id_is_accepted_once(
    daemon: DaemonProcess, stub: pb_grpc.GatewayStub, function_id: str, client: Client
) -> None:
    submit_id = str(uuid.uuid4())
    group = str(uuid.uuid4())
    first = submit(stub, function_id, submit_id=submit_id, task_group_id=group)()
    second = submit(stub, function_id, submit_id=submit_id, task_group_id=group)()
    assert list(first.task_ids) == list(second.task_ids)  # type: ignore[attr-defined]
    assert len(client.get_task_group(group)["tasks"]) == 1


def test_locked_database_gives_unavailable_and_loses_nothing(tmp_path: object) -> None:
    import sqlite3
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    d = DaemonProcess(tmp_path / "state", extra_env={"FXGATE_DB_BUSY_TIMEOUT_MS": "50"})
    d.start()
    try:
        stub = pb_grpc.GatewayStub(grpc.insecure_channel(d.address))
        fid = register_double(stub)
        with Executor(endpoint_id="local", address=d.address) as ex:
            before = ex.submit(double, 1)
            assert before.result(timeout=60) == 2
            blocker = sqlite3.connect(d.state_dir / "gateway.db", isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            err = refusal(submit(stub, fid))
            assert err.code() == grpc.StatusCode.UNAVAILABLE
            assert "database" in err.details() and "locked" in err.details()
            during = ex.submit(double, 2)  # the client retries until the store is back
            blocker.execute("ROLLBACK")
            blocker.close()
            assert during.result(timeout=60) == 4
        with Client(address=d.address) as c:
            assert c.status()["tasks"] == {"SUCCESS": 2}
    finally:
        assert d.stop() == 0


def test_submit_given_up_by_its_client_while_committing_is_still_accepted(
    tmp_path: object,
) -> None:
    """A Submit whose caller left (deadline) during the commit is kept, and nothing breaks."""
    import sqlite3
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    d = DaemonProcess(tmp_path / "state")
    d.start()
    try:
        stub = pb_grpc.GatewayStub(grpc.insecure_channel(d.address))
        fid = register_double(stub)
        group = str(uuid.uuid4())
        blocker = sqlite3.connect(d.state_dir / "gateway.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # the commit waits (busy timeout 5 s)
        request = pb.SubmitRequest(
            endpoint_id="local",
            task_group_id=group,
            tasks=[pb.TaskSpec(function_id=fid, payload=pack_payload((1,), {}))],
        )
        err = refusal(lambda: stub.Submit(request, timeout=0.3))
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        blocker.execute("ROLLBACK")
        blocker.close()
        # One writer commits in order: once a later submit is answered, the first is in.
        submit(stub, fid, task_group_id=group)()
        with Client(address=d.address) as c:
            assert len(c.get_task_group(group)["tasks"]) == 2
        still_serving(d)
    finally:
        assert d.stop() == 0
    log = d.log_path.read_text()
    assert "Traceback" not in log and "exception calling callback" not in log
