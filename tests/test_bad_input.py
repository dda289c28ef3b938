"""Bad input gets a clear gRPC error, and the daemon goes on serving everyone else."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import grpc
import pytest

from client import Client, Executor, GatewayUnavailable, RequestRefused, TaskExecutionFailed
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from fxgate_contract.serialize import pack_buffers, pack_function, pack_payload
from tests.daemon import DaemonProcess

on_both_databases = pytest.mark.parametrize("daemon", ["sqlite", "postgresql"], indirect=True)


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
            with Client(address=d.address) as c, pytest.raises(GatewayUnavailable) as told:
                c.register_function(lambda y: y + 1)  # a new function: a write
            message = str(told.value)  # the daemon's own reason, not "no daemon answers"
            assert "cannot serve RegisterFunction now" in message and "locked" in message
            assert "no fxgate daemon answers" not in message
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


def no_traceback(daemon: DaemonProcess) -> None:
    log = daemon.log()
    assert "Traceback" not in log and "failed unexpectedly" not in log, log[-3000:]


@pytest.mark.parametrize(
    "length",
    ["²", "٤", "9" * 5000, "1" * 11],  # str.isdigit() accepts all four; int() refuses two
)
def test_a_length_that_is_not_a_few_ascii_digits_is_refused(
    daemon: DaemonProcess, stub: pb_grpc.GatewayStub, function_id: str, length: str
) -> None:
    err = refusal(
        lambda: stub.RegisterFunction(
            pb.RegisterFunctionRequest(function_name="f", function_code=f"{length}\n01\nx")
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert "function_code is not a packed Globus Compute buffer" in err.details()
    payload = f"{length}\n00\nx" + pack_buffers(["00\n{}"])
    err = refusal(
        submit(stub, function_id, tasks=[pb.TaskSpec(function_id=function_id, payload=payload)])
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert "task 0: payload is not a packed Globus Compute buffer" in err.details()
    still_serving(daemon)
    no_traceback(daemon)


def negative_after_seq(group_id: str, after_seq: int) -> bytes:
    """A WatchRequest whose after_seq is a negative int64, as another language may encode it."""
    n, varint = after_seq & (2**64 - 1), bytearray()
    while n > 0x7F:
        varint.append(n & 0x7F | 0x80)
        n >>= 7
    varint.append(n)
    return pb.WatchRequest(task_group_id=group_id).SerializeToString() + b"\x10" + bytes(varint)


@on_both_databases
def test_watch_after_a_seq_out_of_the_stores_range_is_refused(
    daemon: DaemonProcess, stub: pb_grpc.GatewayStub, function_id: str
) -> None:
    group = str(uuid.uuid4())
    submit(stub, function_id, task_group_id=group)()
    for after_seq in (2**31, 2**63, 2**64 - 1):  # 2**31: PostgreSQL's INTEGER overflowed
        request = pb.WatchRequest(task_group_id=group, after_seq=after_seq)
        err = refusal(lambda r=request: list(stub.Watch(r)))  # type: ignore[misc]
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert f"after_seq {after_seq} is out of range" in err.details()
    raw = grpc.insecure_channel(daemon.address).unary_stream("/fxgate.v1.Gateway/Watch")
    err = refusal(lambda: list(raw(negative_after_seq(group, -1))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    # The largest seq the store can hold is fine: nothing after it, then live.
    # (A stream begins with the group's running tasks, seq 0, which finish nothing.)
    stream = stub.Watch(pb.WatchRequest(task_group_id=group, after_seq=2**31 - 1))
    messages = []
    for message in stream:
        messages.append(message)
        if message.replay_done:
            break
    stream.cancel()
    assert messages[-1].replay_done
    assert not [e for m in messages for e in m.events if e.seq]
    still_serving(daemon)
    no_traceback(daemon)


@on_both_databases
def test_a_submit_id_is_accepted_again_only_as_an_exact_retry(
    daemon: DaemonProcess, stub: pb_grpc.GatewayStub, function_id: str, client: Client
) -> None:
    submit_id, group, other_group = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    task = pb.TaskSpec(function_id=function_id, payload=pack_payload((1,), {}))
    first = submit(stub, function_id, submit_id=submit_id, task_group_id=group, tasks=[task] * 2)()
    other_fid = stub.RegisterFunction(
        pb.RegisterFunctionRequest(function_name="neg", function_code=pack_function(abs))
    ).function_id
    other = pb.TaskSpec(function_id=other_fid, payload=pack_payload((1,), {}))
    for changed in (
        {"tasks": [task] * 3},  # more tasks (was INTERNAL: KeyError in the store)
        {"tasks": [task]},  # fewer
        {"tasks": [task, other]},  # another function
        {"task_group_id": other_group},  # another group (was answered with the first's ids)
    ):
        fields = {"submit_id": submit_id, "task_group_id": group, "tasks": [task] * 2} | changed
        err = refusal(submit(stub, function_id, **fields))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (changed, err.details())
        assert f"submit_id {submit_id} was already used for another batch" in err.details()
    again = submit(stub, function_id, submit_id=submit_id, task_group_id=group, tasks=[task] * 2)()
    assert list(again.task_ids) == list(first.task_ids)  # type: ignore[attr-defined]
    assert [t["id"] for t in client.get_task_group(group)["tasks"]] == list(first.task_ids)  # type: ignore[attr-defined]
    with pytest.raises(RequestRefused, match="NOT_FOUND"):
        client.get_task_group(other_group)
    still_serving(daemon)
    no_traceback(daemon)


def test_a_retried_submit_that_names_no_group_lands_in_one_group(
    daemon: DaemonProcess, stub: pb_grpc.GatewayStub, function_id: str, client: Client
) -> None:
    submit_id = str(uuid.uuid4())
    first = submit(stub, function_id, submit_id=submit_id)()
    again = submit(stub, function_id, submit_id=submit_id)()
    assert again.task_group_id == first.task_group_id  # type: ignore[attr-defined]
    assert list(again.task_ids) == list(first.task_ids)  # type: ignore[attr-defined]
    assert len(client.get_task_group(first.task_group_id)["tasks"]) == 1  # type: ignore[attr-defined]


def test_long_ids_are_quoted_short_and_logged_short(
    daemon: DaemonProcess, stub: pb_grpc.GatewayStub, function_id: str
) -> None:
    ten_kb = "x" * 10_000
    calls: list[Callable[[str], object]] = [
        lambda i: stub.GetTaskGroup(pb.GetTaskGroupRequest(task_group_id=i)),
        lambda i: stub.GetTasks(pb.GetTasksRequest(task_ids=[i])),
        lambda i: stub.Cancel(pb.CancelRequest(task_ids=[i])),
        lambda i: stub.ReleaseGroup(pb.ReleaseGroupRequest(task_group_id=i)),
        lambda i: list(stub.Watch(pb.WatchRequest(task_group_id=i))),
        lambda i: submit(stub, function_id, task_group_id=i)(),  # type: ignore[operator]
        lambda i: submit(stub, function_id, endpoint_id=i)(),  # type: ignore[operator]
        lambda i: submit(stub, function_id, submit_id=i)(),  # type: ignore[operator]
        lambda i: submit(stub, i)(),  # type: ignore[operator]
    ]
    for call in calls:
        err = refusal(lambda c=call: c(ten_kb))  # type: ignore[misc]
        # was the whole id: 10 KB of status that the client refused as RESOURCE_EXHAUSTED
        assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        assert "…(10000 chars)" in err.details() and len(err.details()) < 200, err.details()[:300]
    twenty_mb = "y" * 20_000_000
    for _ in range(5):
        err = refusal(lambda: stub.GetTaskGroup(pb.GetTaskGroupRequest(task_group_id=twenty_mb)))
        assert "…(20000000 chars)" in err.details()
    assert daemon.log_path.stat().st_size < 20_000  # was 23 MB for these five calls
    still_serving(daemon)


@on_both_databases
def test_get_task_group_lists_tasks_in_submit_order(
    daemon: DaemonProcess, stub: pb_grpc.GatewayStub, function_id: str, client: Client
) -> None:
    group = str(uuid.uuid4())
    tasks = [
        pb.TaskSpec(function_id=function_id, payload=pack_payload((i,), {})) for i in range(12)
    ]
    ids = list(submit(stub, function_id, task_group_id=group, tasks=tasks)().task_ids)  # type: ignore[attr-defined]
    ids += list(submit(stub, function_id, task_group_id=group, tasks=tasks[:3])().task_ids)  # type: ignore[attr-defined]
    assert [t["id"] for t in client.get_task_group(group)["tasks"]] == ids  # was ":10" before ":2"
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        futures = ex.reload_tasks(group)
        assert [f.task_id for f in futures] == ids
        assert [f.result(timeout=60) for f in futures] == [2 * i for i in range(12)] + [0, 2, 4]


def test_get_tasks_answers_once_per_id_in_request_order_and_caps_the_count(
    daemon: DaemonProcess, stub: pb_grpc.GatewayStub, function_id: str, client: Client
) -> None:
    a, b = submit(
        stub,
        function_id,
        tasks=[pb.TaskSpec(function_id=function_id, payload=pack_payload((1,), {}))] * 2,
    )().task_ids  # type: ignore[attr-defined]
    answer = stub.GetTasks(pb.GetTasksRequest(task_ids=[b] * 10_000 + [a, b]))
    assert [t.task_id for t in answer.tasks] == [b, a]  # was 12 entries for 10,000 copies of b
    assert set(client.get_batch_result([a, b, a])) == {a, b}
    err = refusal(lambda: stub.GetTasks(pb.GetTasksRequest(task_ids=[a] * 100_001)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 100000 task ids" in err.details()
    err = refusal(lambda: stub.Cancel(pb.CancelRequest(task_ids=[a] * 100_001)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    still_serving(daemon)


@on_both_databases
def test_a_nul_character_is_refused_not_read_as_a_store_fault(
    daemon: DaemonProcess, stub: pb_grpc.GatewayStub, function_id: str
) -> None:
    """PostgreSQL's text cannot hold NUL: the store's error read as UNAVAILABLE, retried forever."""
    err = refusal(
        lambda: stub.RegisterFunction(
            pb.RegisterFunctionRequest(function_name="a\x00b", function_code=pack_function(abs))
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert "function_name contains a NUL character" in err.details()
    payload = pack_buffers(["00\n\x00", "00\n{}"])
    err = refusal(
        submit(stub, function_id, tasks=[pb.TaskSpec(function_id=function_id, payload=payload)])
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert "task 0: payload contains a NUL character" in err.details()
    still_serving(daemon)
