"""Task options and serialization strategies reach the web service exactly as the SDK sends them.

The same calls are made through globus-compute-sdk 4.19.0's own Executor and
through fxgate's (a real daemon), both against the fake web service, and the
submit bodies it recorded are compared: everything but the ids each service
call generates. Then what fxgate adds: options survive a SIGKILL of the
daemon, tasks whose options differ never share a request, the local endpoint
refuses what it cannot honour, and a bad option is refused where it is given.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from globus_compute_sdk import Client as SdkClient
from globus_compute_sdk import Executor as SdkExecutor
from globus_compute_sdk.sdk.batch import Batch as SdkBatch
from globus_compute_sdk.sdk.batch import create_user_runtime
from globus_compute_sdk.serialize import (
    AllCodeStrategies,
    CombinedCode,
    ComputeSerializer,
    DillCode,
    DillCodeSource,
    DillCodeTextInspect,
    JSONData,
    PureSourceDill,
    PureSourceTextInspect,
)
from packaging.version import Version

from client import Batch, Client, Executor, RequestRefused
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from fxgate_contract.runtime import SDK_VERSION, user_runtime
from fxgate_contract.serialize import deserialize, pack_function, pack_payload, unpack_buffers
from tests.daemon import DaemonProcess
from tests.support.fake_globus import FakeGlobus, reset_sdk_executor_state, sdk_client
from tests.support.fixtures import fake_globus, rabbit  # noqa: F401

TIMEOUT = 60


def double(x: int) -> int:
    return 2 * x


@pytest.fixture
def gdaemon(tmp_path: Path, fake_globus: FakeGlobus) -> Iterator[DaemonProcess]:  # noqa: F811
    """A daemon whose Globus upstream is the fake service."""
    d = DaemonProcess(tmp_path / "state", extra_env=fake_globus.daemon_env())
    d.start()
    yield d
    assert d.stop() in (0, -9), d.log()


@pytest.fixture
def sdk(fake_globus: FakeGlobus) -> Iterator[SdkClient]:  # noqa: F811
    """A real SDK Client on the fake; its AMQP watchers are stopped in teardown."""
    reset_sdk_executor_state()
    yield sdk_client(fake_globus)
    reset_sdk_executor_state()


def _shape(fake: FakeGlobus, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """What the bodies say, without the ids the service generated.

    Function ids become the code registered under them (the same bytes from
    both: the strategies are the SDK's); every body must carry the same options
    (one Executor, one set).
    """
    options = set()
    tasks = []
    for body in bodies:
        rest = {k: v for k, v in body.items() if k not in ("tasks", "task_group_id")}
        options.add(json.dumps(rest, sort_keys=True))
        for function_id, payloads in body["tasks"].items():
            code = fake.registered_code(function_id)
            tasks.extend((code, p) for p in payloads)
    assert len(options) == 1, options
    return {"options": json.loads(options.pop()), "tasks": sorted(tasks)}


SERIALIZERS = [DillCode, DillCodeSource, DillCodeTextInspect, CombinedCode, AllCodeStrategies]
SERIALIZERS += [PureSourceTextInspect, PureSourceDill]

SCENARIOS: dict[str, dict[str, Any]] = {
    "plain": {},
    "user_endpoint_config": {"user_endpoint_config": {"worker_init": "module load x", "n": 2}},
    "resource_specification": {"resource_specification": {"num_nodes": 2, "ranks_per_node": 4}},
    "result_serializers": {"result_serializers": [JSONData()]},
    "data_JSONData": {"serializer": ComputeSerializer(strategy_data=JSONData())},
    **{
        f"code_{s.__name__}": {"serializer": ComputeSerializer(strategy_code=s())}
        for s in SERIALIZERS
    },
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_sdk_and_fxgate_send_the_same_submit_body(
    scenario: str,
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
    sdk: SdkClient,
) -> None:
    kwargs = SCENARIOS[scenario]
    shapes = []
    for make in (
        lambda: SdkExecutor(endpoint_id=fake_globus.endpoint_id, client=sdk, **kwargs),
        lambda: Executor(endpoint_id=fake_globus.endpoint_id, address=gdaemon.address, **kwargs),
    ):
        start = len(fake_globus.submit_bodies)
        with make() as ex:
            futures = [ex.submit(double, i) for i in range(3)]
            assert [f.result(timeout=TIMEOUT) for f in futures] == [0, 2, 4]
        shapes.append(_shape(fake_globus, fake_globus.submit_bodies_since(start)))
    sdk_shape, fxgate_shape = shapes
    assert fxgate_shape == sdk_shape
    runtime = fxgate_shape["options"]["user_runtime"]
    assert Version(runtime["globus_compute_sdk_version"]) == Version(SDK_VERSION)
    if scenario.startswith("code_"):
        wanted = kwargs["serializer"].code_serializer.identifier
        assert {unpack_buffers(code)[0][:3] for code, _ in fxgate_shape["tasks"]} == {wanted}


def test_batch_prepare_is_the_sdks_body() -> None:
    """Client.create_batch/Batch in the SDK's argument order build the SDK's v3 body."""
    runtime = create_user_runtime()
    function_id = str(uuid.uuid4())
    group = str(uuid.uuid4())
    args = (group, {"num_ranks": 4}, {"account": "abc"}, True)
    serde = ComputeSerializer(strategy_data=JSONData())
    ours = Batch(*args, serde, runtime, ["globus_compute_sdk.serialize.JSONData"])
    theirs = SdkBatch(*args, serde, runtime, ["globus_compute_sdk.serialize.JSONData"])
    for b in (ours, theirs):
        b.add(function_id, (1, "a"), {"k": [2]})
        b.add(function_id, (3,))
    assert json.loads(json.dumps(ours.prepare())) == json.loads(json.dumps(theirs.prepare()))
    # fxgate's own user_runtime has the SDK's keys, all the way down
    sdk_runtime = json.loads(json.dumps(theirs.prepare()["user_runtime"]))
    mine = user_runtime()
    assert mine.keys() == sdk_runtime.keys()
    assert mine["python"].keys() == sdk_runtime["python"].keys()
    assert mine["platform"].keys() == sdk_runtime["platform"].keys()
    assert mine == sdk_runtime  # same process, same SDK and globus-sdk versions installed


def test_a_bad_option_is_a_type_error_where_it_is_given(
    daemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
    sdk: SdkClient,
) -> None:
    theirs = SdkExecutor(endpoint_id=fake_globus.endpoint_id, client=sdk)
    ours = Executor(endpoint_id="local", address=daemon.address)
    try:
        for name in ("resource_specification", "user_endpoint_config"):
            for bad in (["not", "a", "dict"], "text", {"x": object()}):
                messages = []
                for ex in (theirs, ours):
                    with pytest.raises(TypeError) as err:
                        setattr(ex, name, bad)
                    messages.append(str(err.value))
                assert messages[0] == messages[1]
                with pytest.raises(TypeError, match=messages[0]):
                    Executor(endpoint_id="local", address=daemon.address, **{name: bad})
                with Client(address=daemon.address) as c, pytest.raises(TypeError):
                    c.create_batch(None, **{name: bad})
            setattr(ours, name, {"ok": 1})
            assert getattr(ours, name) == {"ok": 1}
        with pytest.raises(TypeError, match="Expected ComputeSerializer, got int"):
            ours.serializer = 5
    finally:
        theirs.shutdown(wait=False, cancel_futures=True)
        ours.shutdown(wait=False, cancel_futures=True)


def test_a_strategy_fxgate_cannot_honour_is_refused_at_the_call(daemon: DaemonProcess) -> None:
    with pytest.raises(ValueError, match="PickleCode can no longer serialize"):
        Client(address=daemon.address, code_serialization_strategy="PickleCode")
    with pytest.raises(ValueError, match="JSONData is a data serialization strategy"):
        Client(address=daemon.address, code_serialization_strategy=JSONData())
    with pytest.raises(ValueError, match="NoSuchCode is not a known"):
        Client(address=daemon.address, data_serialization_strategy="x.NoSuchCode")


def test_client_strategies_serialize_code_and_data(daemon: DaemonProcess) -> None:
    """Client(code_/data_serialization_strategy) registers and submits with them, end to end."""
    with Client(
        address=daemon.address,
        code_serialization_strategy=PureSourceTextInspect(),
        data_serialization_strategy=JSONData(),
    ) as c:
        fid = c.register_function(double)
        batch = c.create_batch()
        batch.add(fid, "local", (21,))
        items = unpack_buffers(batch.tasks[0][2])
        assert [i[:3] for i in items] == ["11\n", "11\n"]
        c.batch_run(batch)
        group = batch.task_group_id
    with Executor(address=daemon.address) as ex:
        (future,) = ex.reload_tasks(group)
        assert future.result(timeout=TIMEOUT) == 42


def test_options_survive_a_daemon_sigkill(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
) -> None:
    config, resources = {"worker_init": "source env.sh"}, {"num_nodes": 3}
    fake_globus.set_down(True)  # accepted by the daemon, not yet sent anywhere
    with Client(address=gdaemon.address) as c:
        fid = c.register_function(double)
        batch = c.create_batch(None, resources, config)
        for i in range(5):
            batch.add(fid, fake_globus.endpoint_id, (i,))
        ids = c.batch_run(batch)
    gdaemon.kill()
    assert fake_globus.submit_bodies_since(0) == []
    fake_globus.set_down(False)
    gdaemon.start()
    assert fake_globus.wait_for(lambda: len(fake_globus.accepted) >= 5, TIMEOUT)
    bodies = fake_globus.submit_bodies_since(0)
    for body in bodies:
        assert body["user_endpoint_config"] == config
        assert body["resource_specification"] == resources
        assert Version(body["user_runtime"]["globus_compute_sdk_version"]) == Version("4.19.0")
        assert body["user_runtime"] == user_runtime()  # this (client) process's runtime
    assert sum(len(p) for b in bodies for p in b["tasks"].values()) == len(ids) == 5


def test_tasks_with_different_options_never_share_a_request(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
) -> None:
    """Batches of one group queue up together in the daemon, and still go out apart."""
    fake_globus.hold_submits()  # the group's first request waits: the rest queue behind it
    with Client(address=gdaemon.address) as c:
        fid = c.register_function(double)
        group = str(uuid.uuid4())
        for i in range(12):
            batch = c.create_batch(group, None, {"k": i % 3} if i % 4 else None)
            batch.add(fid, fake_globus.endpoint_id, (i,))
            c.batch_run(batch)
        assert fake_globus.wait_for(lambda: fake_globus.submits_held >= 1, TIMEOUT)
        fake_globus.release_submits()
        assert fake_globus.wait_for(lambda: len(fake_globus.accepted) >= 12, TIMEOUT)
    seen = 0
    for body in fake_globus.submit_bodies_since(0):
        for payloads in body["tasks"].values():
            for payload in payloads:
                (i,) = deserialize(unpack_buffers(payload)[0])
                expected = {"k": i % 3} if i % 4 else None
                assert body.get("user_endpoint_config") == expected, (i, body)
                seen += 1
    assert seen == 12


@pytest.fixture
def stub(daemon: DaemonProcess) -> pb_grpc.GatewayStub:
    return pb_grpc.GatewayStub(grpc.insecure_channel(daemon.address))


def _submit(stub: pb_grpc.GatewayStub, **options: str) -> pb.SubmitResponse:
    fid = stub.RegisterFunction(
        pb.RegisterFunctionRequest(function_name="double", function_code=pack_function(double))
    ).function_id
    task = pb.TaskSpec(function_id=fid, payload=pack_payload((1,), {}))
    response: pb.SubmitResponse = stub.Submit(
        pb.SubmitRequest(endpoint_id="local", tasks=[task], **options)
    )
    return response


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"user_endpoint_config_json": '{"a": 1}'}, "local endpoint has no endpoint config"),
        ({"resource_specification_json": '{"gpus": 1}'}, "does not understand"),
        ({"resource_specification_json": "[1]"}, "must be a JSON object"),
        ({"user_runtime_json": "{nope"}, "user_runtime is not JSON"),
        ({"user_endpoint_config_json": '"x"'}, "must be a JSON object"),
        (
            {"resource_specification_json": json.dumps({"num_ranks": "x" * 70_000})},
            "at most 65536",
        ),
    ],
)
def test_the_daemon_refuses_bad_or_unusable_options(
    stub: pb_grpc.GatewayStub, options: dict[str, str], reason: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _submit(stub, **options)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in (err.value.details() or "")


def test_local_endpoint_refuses_user_endpoint_config_and_runs_mpi_resources(
    daemon: DaemonProcess,
) -> None:
    with Executor(endpoint_id="local", address=daemon.address, user_endpoint_config={"a": 1}) as ex:
        exc = ex.submit(double, 1).exception(timeout=TIMEOUT)
    assert isinstance(exc, RequestRefused) and exc.code == "INVALID_ARGUMENT"
    assert "local endpoint" in exc.message
    spec = {"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2, "launcher_options": "-x"}
    with Executor(endpoint_id="local", address=daemon.address, resource_specification=spec) as ex:
        assert ex.submit(double, 4).result(timeout=TIMEOUT) == 8
