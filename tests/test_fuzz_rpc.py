"""Arbitrary values in every field of every RPC never get INTERNAL or UNKNOWN from the daemon.

A client's mistake must get a status that names it (INVALID_ARGUMENT, NOT_FOUND,
...), with a message small enough for the client to receive, and must not put a
traceback in the daemon's log. One real daemon serves the whole module; the
last test checks it still runs a task and logged no traceback.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client import Executor
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from fxgate_contract.serialize import pack_function, pack_payload
from tests.daemon import DaemonProcess

SERVICE = "/fxgate.v1.Gateway/"
METHODS = [
    "RegisterFunction",
    "Submit",
    "Watch",
    "GetTaskGroup",
    "GetTasks",
    "Cancel",
    "ReleaseGroup",
    "Status",
    "DescribeEndpoint",
    "ListEndpoints",
    "DescribeFunction",
    "ListTaskGroups",
    "ListTasks",
    "CollectGarbage",
]
# Codes that mean the daemon failed, not the request (the store is healthy throughout,
# so UNAVAILABLE would be a client's mistake misread as a store fault, retried forever).
DAEMON_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE}
# A status message must fit in the client's default metadata limit (8 KB) with room.
MAX_DETAILS = 2000
FUZZ = settings(
    max_examples=40,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def double(x: int) -> int:
    return x * 2


class Target:
    """The module's daemon, a stub, a raw channel and a few ids that exist in it."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        options = [
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ]
        self.channel = grpc.insecure_channel(daemon.address, options=options)
        self.stub = pb_grpc.GatewayStub(self.channel)
        fn = pb.RegisterFunctionRequest(function_name="double", function_code=pack_function(double))
        self.function_id = self.stub.RegisterFunction(fn).function_id
        self.group_id = str(uuid.uuid4())
        answer = self.stub.Submit(
            pb.SubmitRequest(
                task_group_id=self.group_id,
                endpoint_id="local",
                tasks=[pb.TaskSpec(function_id=self.function_id, payload=pack_payload((1,), {}))],
            )
        )
        self.task_id = answer.task_ids[0]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """One daemon for every test of the module, on each kind of store."""
    extra = {}
    if request.param == "postgresql":
        extra["FXGATE_DB"] = request.getfixturevalue("postgres").new_database()
    d = DaemonProcess(tmp_path_factory.mktemp("fuzz") / "state", extra_env=extra)
    d.start()
    t = Target(d)
    yield t
    t.channel.close()
    assert d.stop() == 0, d.log()


def answered(call: Callable[[], Any]) -> None:
    """Make a call; any refusal must be a client-side code with a bounded message."""
    try:
        call()
    except grpc.RpcError as err:
        code, details = err.code(), err.details() or ""
    else:
        return
    # Outside the except block, so a failure does not print the whole error again.
    assert code not in DAEMON_FAULTS, f"{code}: {details[:500]}"
    assert len(details) <= MAX_DETAILS, f"{code}: {len(details)} chars: {details[:200]}"


# Text with the shapes that have broken parsers: digits of other scripts (which
# str.isdigit accepts and int rejects), long digit runs, newlines, huge strings.
unicode_digits = st.sampled_from(["²", "٣", "߂", "𝟗", "①", "০", "1", "0", "9"])
digit_runs = st.lists(unicode_digits, min_size=1, max_size=12).map("".join)
huge_digits = st.integers(4000, 6000).map(lambda n: "9" * n)


@st.composite
def packed_like(draw: st.DrawFn) -> str:
    """Something shaped like a packed buffer, with a length that may lie or not parse."""
    items = draw(st.lists(st.tuples(digit_runs | huge_digits, st.text(max_size=20)), max_size=3))
    strategy = draw(st.sampled_from(["00", "01", "11", "zz", "", "0"]))
    return "".join(f"{length}\n{strategy}\n{body}" for length, body in items)


def ids(target: Target) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=60),
        st.uuids().map(str),
        st.sampled_from([target.group_id, target.task_id, target.function_id, "local", ""]),
        st.uuids().map(lambda u: u.hex.upper()),
        st.integers(10_000, 2_000_000).map(lambda n: "x" * n),
        digit_runs,
    )


def texts(target: Target) -> st.SearchStrategy[str]:
    return st.one_of(st.text(), packed_like(), ids(target), huge_digits)


def uint64() -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(0, 2**64 - 1), st.sampled_from([0, 2**31 - 1, 2**31, 2**63, 2**64 - 1])
    )


@FUZZ
@given(data=st.data())
def test_register_function(target: Target, data: st.DataObject) -> None:
    name, code = data.draw(texts(target)), data.draw(texts(target))
    answered(
        lambda: target.stub.RegisterFunction(
            pb.RegisterFunctionRequest(function_name=name, function_code=code), timeout=30
        )
    )


def option_texts(target: Target) -> st.SearchStrategy[str]:
    """A task option's JSON text: none, an object, any JSON value, or anything at all."""
    scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=6,
    )
    objects = st.dictionaries(st.text(max_size=8), values, max_size=4)
    return st.just("") | objects.map(json.dumps) | values.map(json.dumps) | texts(target)


@st.composite
def task_specs(draw: st.DrawFn, target: Target) -> pb.TaskSpec:
    fid = draw(st.sampled_from([target.function_id]) | ids(target))
    payload = draw(st.sampled_from([pack_payload((2,), {})]) | texts(target))
    return pb.TaskSpec(function_id=fid, payload=payload)


@FUZZ
@given(data=st.data())
def test_submit(target: Target, data: st.DataObject) -> None:
    request = pb.SubmitRequest(
        task_group_id=data.draw(st.sampled_from([target.group_id, ""]) | ids(target)),
        endpoint_id=data.draw(st.sampled_from(["local"]) | ids(target)),
        tasks=data.draw(st.lists(task_specs(target), max_size=3)),
        submit_id=data.draw(st.sampled_from(["", str(uuid.uuid4())]) | ids(target)),
        result_serializers=data.draw(st.lists(texts(target), max_size=3)),
        user_endpoint_config_json=data.draw(option_texts(target)),
        resource_specification_json=data.draw(
            st.sampled_from(['{"num_ranks": 2}']) | option_texts(target)
        ),
        user_runtime_json=data.draw(option_texts(target)),
    )
    answered(lambda: target.stub.Submit(request, timeout=30))


@FUZZ
@given(data=st.data())
def test_submit_id_reused(target: Target, data: st.DataObject) -> None:
    """A submit_id sent again with other fields is refused or repeats the first answer."""
    submit_id = str(uuid.uuid4())
    spec = pb.TaskSpec(function_id=target.function_id, payload=pack_payload((3,), {}))
    first = pb.SubmitRequest(
        task_group_id=str(uuid.uuid4()), endpoint_id="local", tasks=[spec], submit_id=submit_id
    )
    answer = target.stub.Submit(first, timeout=30)
    again = pb.SubmitRequest(
        task_group_id=data.draw(st.sampled_from([first.task_group_id, target.group_id, ""])),
        endpoint_id="local",
        tasks=[spec] * data.draw(st.integers(1, 3)),
        submit_id=submit_id,
    )
    try:
        repeated = target.stub.Submit(again, timeout=30)
    except grpc.RpcError:
        answered(lambda: target.stub.Submit(again, timeout=30))
        return
    # Accepted: only an exact retry may be, and it names the first batch's group and tasks.
    assert (repeated.task_group_id, list(repeated.task_ids)) == (
        answer.task_group_id,
        list(answer.task_ids),
    )
    group = target.stub.GetTaskGroup(pb.GetTaskGroupRequest(task_group_id=answer.task_group_id))
    assert set(repeated.task_ids) <= {t.task_id for t in group.tasks}


def watch_once(target: Target, request: pb.WatchRequest) -> None:
    stream = target.stub.Watch(request, timeout=30)
    try:
        for message in stream:
            if message.replay_done:
                break
    finally:
        stream.cancel()


@FUZZ
@given(data=st.data())
def test_watch(target: Target, data: st.DataObject) -> None:
    request = pb.WatchRequest(
        task_group_id=data.draw(st.sampled_from([target.group_id]) | ids(target)),
        after_seq=data.draw(uint64()),
    )
    answered(lambda: watch_once(target, request))


@FUZZ
@given(data=st.data())
def test_get_task_group_and_release_group(target: Target, data: st.DataObject) -> None:
    group = data.draw(ids(target).filter(lambda g: g != target.group_id))
    answered(lambda: target.stub.GetTaskGroup(pb.GetTaskGroupRequest(task_group_id=group)))
    answered(lambda: target.stub.ReleaseGroup(pb.ReleaseGroupRequest(task_group_id=group)))


@FUZZ
@given(data=st.data())
def test_get_tasks_and_cancel(target: Target, data: st.DataObject) -> None:
    task_ids = data.draw(
        st.lists(ids(target), max_size=4)
        | st.integers(1, 20_000).map(lambda n: [target.task_id] * n)
    )
    answered(lambda: target.stub.GetTasks(pb.GetTasksRequest(task_ids=task_ids), timeout=30))
    answered(lambda: target.stub.Cancel(pb.CancelRequest(task_ids=task_ids), timeout=30))


@FUZZ
@given(data=st.data())
def test_lookups(target: Target, data: st.DataObject) -> None:
    some = data.draw(ids(target))
    metadata = data.draw(st.booleans())
    role = data.draw(texts(target))
    answered(
        lambda: target.stub.DescribeEndpoint(
            pb.DescribeEndpointRequest(endpoint_id=some, metadata=metadata), timeout=30
        )
    )
    answered(lambda: target.stub.ListEndpoints(pb.ListEndpointsRequest(role=role), timeout=30))
    answered(
        lambda: target.stub.DescribeFunction(
            pb.DescribeFunctionRequest(function_id=some), timeout=30
        )
    )


@FUZZ
@given(data=st.data())
def test_listings(target: Target, data: st.DataObject) -> None:
    group = data.draw(st.sampled_from(["", target.group_id]) | ids(target))
    size = data.draw(st.integers(0, 2**32 - 1) | st.sampled_from([0, 1, 1000, 1001, 10_001]))
    token = data.draw(st.sampled_from([""]) | texts(target))
    state = data.draw(st.integers(0, 2**31 - 1) | st.sampled_from([0, 4, 7]))
    answered(
        lambda: target.stub.ListTaskGroups(
            pb.ListTaskGroupsRequest(page_size=size, page_token=token, task_group_id=group),
            timeout=30,
        )
    )
    answered(
        lambda: target.stub.ListTasks(
            pb.ListTasksRequest(
                task_group_id=group,
                state=state,  # type: ignore[arg-type]
                page_size=size,
                page_token=token,
            ),
            timeout=30,
        )
    )
    answered(lambda: target.stub.CollectGarbage(pb.CollectGarbageRequest(dry_run=True)))


@FUZZ
@given(method=st.sampled_from(METHODS), body=st.binary(max_size=200))
def test_raw_bytes(target: Target, method: str, body: bytes) -> None:
    """Bytes that may or may not be a message of the method's request type."""
    if method == "Watch":
        call = target.channel.unary_stream(SERVICE + method)

        def drain() -> None:
            stream = call(body, timeout=5)
            try:
                for message in stream:
                    if pb.WatchResponse.FromString(message).replay_done:
                        break
            finally:
                stream.cancel()

        answered(drain)
    else:
        answered(lambda: target.channel.unary_unary(SERVICE + method)(body, timeout=30))


@FUZZ
@given(after_seq=st.integers(-(2**63), -1))
def test_watch_with_a_negative_seq_on_the_wire(target: Target, after_seq: int) -> None:
    """A negative int64 varint in the uint64 field (as another language's client may send)."""
    group = pb.WatchRequest(task_group_id=target.group_id).SerializeToString()
    body = group + b"\x10" + _varint(after_seq & (2**64 - 1))
    stream = target.channel.unary_stream(SERVICE + "Watch")(body, timeout=30)

    def drain() -> None:
        try:
            for message in stream:
                if pb.WatchResponse.FromString(message).replay_done:
                    break
        finally:
            stream.cancel()

    answered(drain)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_status(target: Target) -> None:
    answered(lambda: target.stub.Status(pb.StatusRequest(), timeout=30))


def test_daemon_still_serves_and_logged_no_traceback(target: Target) -> None:
    """Runs last in this module: after everything above, a normal submit still works."""
    with Executor(endpoint_id="local", address=target.daemon.address) as ex:
        assert ex.submit(double, 21).result(timeout=60) == 42
    log = target.daemon.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 300 :][:3000]
    assert Path(target.daemon.log_path).stat().st_size < 2_000_000
