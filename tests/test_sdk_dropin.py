"""What the SDK accepts either works here as there or is refused as loudly: the
serializer's allowlist, funcX's keywords, failed tasks through the Client, strategy
errors, and the Client's positional parameters, against a real daemon."""

from __future__ import annotations

import uuid

import pytest
from globus_compute_sdk.serialize import (
    ComputeSerializer,
    DillCodeSource,
    DillDataBase64,
    JSONData,
)

from client import (
    Client,
    DeserializationError,
    Executor,
    SerdeError,
    SerializationError,
    TaskExecutionFailed,
)
from tests.daemon import DaemonProcess


def five() -> int:
    return 5


def fails() -> int:
    raise ArithmeticError("no good")


def test_a_serializers_allowlist_decides_which_results_may_be_read(daemon: DaemonProcess) -> None:
    """ComputeSerializer(allowed_deserializer_types=...) is honoured: a result in a strategy
    outside it is refused (DeserializationError, as the SDK's), one inside it is read."""
    only_json = ComputeSerializer(
        strategy_code=DillCodeSource(), allowed_deserializer_types=[JSONData, DillCodeSource]
    )
    with Executor(endpoint_id="local", address=daemon.address, serializer=only_json) as ex:
        dill_result = ex.submit(five)  # the worker answers in DillDataBase64, the default
        ex.result_serializers = [JSONData()]
        json_result = ex.submit(five)
        with pytest.raises(DeserializationError, match="DillDataBase64 disabled"):
            dill_result.result(timeout=60)
        assert json_result.result(timeout=60) == 5
        ex.serializer = ComputeSerializer(
            allowed_deserializer_types=[DillDataBase64, DillCodeSource]
        )
        ex.result_serializers = []
        assert ex.submit(five).result(timeout=60) == 5
    with Client(address=daemon.address) as c:
        c.fx_serializer = only_json  # as SDK scripts assign it; registration still works
        fid = c.register_function(five)
        task = c.run(endpoint_id="local", function_id=fid)
        group = c.session_task_group_id
        with Executor(endpoint_id="local", address=daemon.address, task_group_id=group) as ex:
            (done,) = ex.reload_tasks()
            assert done.result(timeout=60) == 5  # this Executor allows any strategy
        with pytest.raises(DeserializationError, match="DillDataBase64 disabled"):
            c.get_result(task)


def test_get_task_raises_a_failure_and_get_batch_result_leaves_it_out(
    daemon: DaemonProcess,
) -> None:
    """As the SDK's Client: get_task of a failed task raises TaskExecutionFailed;
    get_batch_result answers for the others only."""
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        good, bad = ex.submit(five), ex.submit(fails)
        assert good.result(timeout=60) == 5
        assert isinstance(bad.exception(timeout=60), ArithmeticError)
        assert ex.client.get_task(good.task_id)["result"] == 5  # the SDK's Executor.client
        assert ex.client is ex.client
    with Client(address=daemon.address) as c:
        with pytest.raises(TaskExecutionFailed, match="no good"):
            c.get_task(bad.task_id)
        assert c.get_task(good.task_id)["result"] == 5
        assert set(c.get_batch_result([good.task_id, bad.task_id])) == {good.task_id}


def test_executor_register_function_takes_funcx_function_name(daemon: DaemonProcess) -> None:
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        fid = ex.register_function(five, function_name="renamed")
        assert ex.submit(five).result(timeout=60) == 5
    with Client(address=daemon.address) as c:
        assert c.get_function(fid)["function_name"] == "renamed"


def test_strategy_mistakes_are_serde_errors_at_the_call(daemon: DaemonProcess) -> None:
    """As the SDK's: an unknown or unusable strategy raises SerdeError when it is given
    (also a ValueError, as fxgate raised before), never later on the endpoint."""
    with pytest.raises(SerdeError, match="nonsense is not a known"):
        Client(address=daemon.address, code_serialization_strategy="nonsense")
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        for bad in (["no.such.Strategy"], [42]):
            with pytest.raises(SerdeError):
                ex.result_serializers = bad
        with pytest.raises(ValueError):
            ex.result_serializers = ["no.such.Strategy"]
        assert ex.result_serializers == []  # the refused value was not kept
    assert issubclass(SerializationError, SerdeError) and issubclass(
        DeserializationError, SerdeError
    )
    assert not issubclass(DeserializationError, SerializationError)  # siblings, as in the SDK
    assert SerializationError("why").reason == "why"


def test_the_clients_second_parameter_is_never_the_sdks_local_compute_services(
    daemon: DaemonProcess,
) -> None:
    with pytest.raises(TypeError, match="local_compute_services"):
        Client(daemon.address, True)  # type: ignore[arg-type]
    gid = str(uuid.uuid4())
    with Client(daemon.address, gid) as c:
        assert c.session_task_group_id == gid
