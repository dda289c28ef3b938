"""fxgate_contract.serialize and gateway.execution crossed with the real SDK and endpoint.

Whatever fxgate produces, ``globus_compute_sdk`` (4.19.0) must load, and the other way
round; task bytes built by fxgate must run through the endpoint's own ``execute_task``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from globus_compute_common import messagepack
from globus_compute_common.messagepack.message_types import Result, Task
from globus_compute_endpoint.engines.helper import execute_task
from globus_compute_sdk.errors import TaskExecutionFailed as SdkTaskExecutionFailed
from globus_compute_sdk.serialize import (
    AllCodeStrategies,
    AllDataStrategies,
    CombinedCode,
    ComputeSerializer,
    DillCode,
    DillCodeSource,
    DillCodeTextInspect,
    DillDataBase64,
    JSONData,
    PureSourceDill,
    PureSourceTextInspect,
)
from globus_compute_sdk.serialize.utils import pack_buffers as sdk_pack_buffers
from globus_compute_sdk.serialize.utils import unpack_buffers as sdk_unpack_buffers

from client.errors import TaskExecutionFailed
from fxgate_contract.serialize import (
    deserialize,
    pack_buffers,
    pack_function,
    pack_payload,
    serialize_code,
    serialize_data,
    serialize_result,
    unpack_buffers,
)
from gateway.execution import execute

SDK = ComputeSerializer()
REPO = Path(__file__).resolve().parents[1]
JSON_PATH = "globus_compute_sdk.serialize.JSONData"


class CustomError(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code


def add(a: int, b: int, c: int = 0) -> int:
    return a + b + c


def greet(name: str) -> str:
    return "héllo ✓ " + name  # non-ASCII source on purpose (st/sd lengths)


def make_scaled_sum(n: int) -> Callable[[int, int], int]:
    def scaled_sum(a: int, b: int) -> int:
        return n * (a + b)

    return scaled_sum


def raise_direct(message: str) -> None:
    raise ValueError(message)


def raise_nested(message: str) -> None:
    raise_direct(message)


def make_string(n: int) -> str:
    return "x" * n


def same_exception(a: BaseException, b: BaseException) -> bool:
    return type(a) is type(b) and a.args == b.args


DATA = [0, -7, 2**80, 3.25, None, True, "", "héllo ✓ 😀", b"\x00\xff", (1, [2, {"k": {3}}])]
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "plain": add,
    "closure": make_scaled_sum(10),
    "lambda": lambda a, b: a * b,
    "builtin": max,
}


# -- data ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", DATA, ids=repr)
def test_data_is_byte_identical_and_loads_both_ways(value: Any) -> None:
    ours = serialize_data(value)
    assert ours == SDK.serialize(value) == DillDataBase64().serialize(value)
    assert SDK.deserialize(ours) == value
    assert deserialize(SDK.serialize(value)) == value


@pytest.mark.parametrize("strategy", [JSONData, AllDataStrategies, DillDataBase64])
def test_sdk_data_strategies_load_here(strategy: type[Any]) -> None:
    value = {"a": [1, "é"], "b": None}
    assert deserialize(ComputeSerializer(strategy_data=strategy()).serialize(value)) == value


@pytest.mark.parametrize(
    "exc",
    [ValueError("boom"), KeyError("k"), CustomError(7, "bad"), SystemExit(3)],
    ids=repr,
)
def test_exceptions_cross_both_ways(exc: BaseException) -> None:
    assert same_exception(SDK.deserialize(serialize_data(exc)), exc)
    assert same_exception(deserialize(SDK.serialize(exc)), exc)


# -- functions -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_are_byte_identical_and_load_both_ways(name: str) -> None:
    fn = FUNCTIONS[name]
    ours = serialize_code(fn)
    assert ours == SDK.serialize(fn)
    assert SDK.deserialize(ours)(3, 4) == fn(3, 4)
    assert deserialize(SDK.serialize(fn))(3, 4) == fn(3, 4)
    assert SDK.unpack_buffers(pack_function(fn)) == [ours]


@pytest.mark.parametrize(
    "strategy",
    [
        DillCode,
        DillCodeSource,
        DillCodeTextInspect,
        CombinedCode,
        AllCodeStrategies,
        PureSourceDill,
        PureSourceTextInspect,
    ],
)
def test_sdk_code_strategies_load_here(strategy: type[Any]) -> None:
    packed = SDK.pack_buffers([ComputeSerializer(strategy_code=strategy()).serialize(greet)])
    (item,) = unpack_buffers(packed)
    assert deserialize(item)("x") == "héllo ✓ x"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("globus_compute_sdk.serialize.DillDataBase64", {"a": (1, 2)}),
        ("globus_compute_sdk.serialize.JSONData", {"a": [1, "é"]}),
        ("globus_compute_sdk.serialize.AllDataStrategies", [1, "é"]),
        ("globus_compute_sdk.serialize.AllDataStrategies", {1, 2}),  # JSON part fails
        ("globus_compute_sdk.serialize.concretes.DillCode", greet),
        ("globus_compute_sdk.serialize.DillCodeSource", greet),
        ("globus_compute_sdk.serialize.DillCodeTextInspect", greet),
        ("globus_compute_sdk.serialize.CombinedCode", greet),
        ("globus_compute_sdk.serialize.AllCodeStrategies", greet),
        ("globus_compute_sdk.serialize.PureSourceDill", greet),
        ("globus_compute_sdk.serialize.PureSourceTextInspect", greet),
    ],
)
def test_serialize_result_matches_sdk_byte_for_byte(path: str, value: Any) -> None:
    assert serialize_result(value, [path]) == SDK.serialize_from_list(value, [path])


@pytest.mark.parametrize(
    ("value", "paths"),
    [
        ({1, 2}, [JSON_PATH, "globus_compute_sdk.serialize.DillDataBase64"]),
        (add, [JSON_PATH, "globus_compute_sdk.serialize.DillCode"]),
        ([1], ["globus_compute_sdk.serialize.DillCode", JSON_PATH]),
        ([1], []),
        (add, []),
    ],
)
def test_serialize_result_fallback_order_matches_sdk(value: Any, paths: list[str]) -> None:
    assert serialize_result(value, paths) == SDK.serialize_from_list(value, paths)


def test_packs_cross_both_ways_with_non_ascii_source() -> None:
    items = [PureSourceTextInspect().serialize(greet), "11\n[1]", "00\n"]
    assert "✓" in items[0]
    assert pack_buffers(items) == sdk_pack_buffers(items)
    assert sdk_unpack_buffers(pack_buffers(items)) == items
    assert unpack_buffers(sdk_pack_buffers(items)) == items


def test_task_execution_failed_prints_like_the_sdk() -> None:
    text = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\n'
    assert str(TaskExecutionFailed(text)) == str(SdkTaskExecutionFailed(text))


# -- functions defined in __main__ (by value, in another process) --------------------------


def run_script(source: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_main_function_from_client_loads_in_sdk() -> None:
    out = run_script(
        """
        import json
        from globus_compute_sdk.serialize import ComputeSerializer
        from fxgate_contract.serialize import pack_function, pack_payload

        def poly(x, *, k=1):
            import math
            return math.floor(x * x + k)

        sdk = ComputeSerializer()
        print(json.dumps({
            "function_code": pack_function(poly),
            "sdk_function_code": sdk.pack_buffers([sdk.serialize(poly)]),
            "payload": pack_payload((2.5,), {"k": 3}),
        }))
        """
    )
    assert out["function_code"] == out["sdk_function_code"]  # same bytes as the SDK makes
    (fn_text,) = SDK.unpack_buffers(out["function_code"])
    fn = SDK.deserialize(fn_text)
    assert fn.__module__ == "__main__" and fn.__name__ == "poly"  # really by value
    args, kwargs = (SDK.deserialize(p) for p in SDK.unpack_buffers(out["payload"]))
    assert fn(*args, **kwargs) == 9


def test_main_function_from_sdk_runs_in_execute() -> None:
    out = run_script(
        """
        import json
        from globus_compute_sdk.serialize import ComputeSerializer

        def shout(word, times=1):
            return (word.upper() + "!") * times

        sdk = ComputeSerializer()
        print(json.dumps({
            "function_code": sdk.pack_buffers([sdk.serialize(shout)]),
            "payload": sdk.pack_buffers([sdk.serialize(("héllo",)), sdk.serialize({"times": 2})]),
        }))
        """
    )
    (fn_text,) = unpack_buffers(out["function_code"])
    assert deserialize(fn_text)("a") == "A!"
    outcome = execute(out["function_code"], out["payload"])
    assert outcome.error_code == ""
    assert SDK.deserialize(outcome.data) == "HÉLLO!HÉLLO!"


# -- the endpoint's own execute_task -------------------------------------------------------


@pytest.fixture
def run_on_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run a task buffer through globus-compute-endpoint's execute_task, in this process."""
    # execute_task chdirs and sets GC_TASK_* variables; let monkeypatch undo both
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GC_TASK_UUID", "")
    monkeypatch.setenv("GC_TASK_SANDBOX_DIR", "")

    def run(task_buffer: str, result_serializers: list[str] | None = None) -> Result:
        task_id = uuid.uuid4()
        body = messagepack.pack(Task(task_id=task_id, task_buffer=task_buffer))
        packed = execute_task(
            body, task_id, run_dir=str(tmp_path), result_serializers=result_serializers
        )
        result = messagepack.unpack(packed)
        assert isinstance(result, Result) and result.task_id == task_id
        return result

    return run


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "expected"),
    [
        (add, (1, 2), {"c": 3}, 6),
        (make_scaled_sum(5), [1, 2], {}, 15),
        (greet, ("wörld",), {}, "héllo ✓ wörld"),
        (lambda **kw: sorted(kw), (), {"b": 1, "a": 2}, ["a", "b"]),
    ],
)
def test_endpoint_runs_client_built_task(
    run_on_endpoint: Callable[..., Result],
    fn: Callable[..., Any],
    args: Any,
    kwargs: dict[str, Any],
    expected: Any,
) -> None:
    function_code, payload = pack_function(fn), pack_payload(args, kwargs)
    result = run_on_endpoint(function_code + payload)
    assert not result.is_error, result.data
    assert deserialize(result.data) == expected
    assert result.data == execute(function_code, payload).data  # our worker agrees


def test_endpoint_json_result_serializer(run_on_endpoint: Callable[..., Result]) -> None:
    function_code, payload = pack_function(add), pack_payload((1, 2), {})
    result = run_on_endpoint(function_code + payload, [JSON_PATH])
    assert result.data == "11\n3" == execute(function_code, payload, [JSON_PATH]).data
    assert deserialize(result.data) == 3


def test_endpoint_and_execute_agree_on_direct_raise(
    run_on_endpoint: Callable[..., Result],
) -> None:
    function_code, payload = pack_function(raise_direct), pack_payload(("boom",), {})
    result = run_on_endpoint(function_code + payload)
    outcome = execute(function_code, payload)
    assert result.error_details is not None
    assert result.error_details.code == outcome.error_code == "RemoteExecutionError"
    assert outcome.data == result.data  # identical traceback text, starting at the user frame
    assert result.data.splitlines()[1].endswith(", in raise_direct")
    assert same_exception(SDK.deserialize(outcome.exception), ValueError("boom"))


def test_endpoint_drops_the_user_frame_on_nested_raise(
    run_on_endpoint: Callable[..., Result],
) -> None:
    # The endpoint always skips two frames from the top (its own and one more), so when the
    # error comes from deeper down it loses the user's entry frame; execute() keeps it.
    function_code, payload = pack_function(raise_nested), pack_payload(("deep",), {})
    endpoint_lines = run_on_endpoint(function_code + payload).data.splitlines()
    our_lines = execute(function_code, payload).data.splitlines()
    assert ", in raise_nested" not in "\n".join(endpoint_lines)
    assert our_lines[1].endswith(", in raise_nested")
    assert our_lines[0] == endpoint_lines[0] == "Traceback (most recent call last):"
    assert our_lines[-len(endpoint_lines) + 1 :] == endpoint_lines[1:]


def test_endpoint_and_execute_agree_on_oversize(run_on_endpoint: Callable[..., Result]) -> None:
    function_code, payload = pack_function(make_string), pack_payload((10 * 1024 * 1024,), {})
    result = run_on_endpoint(function_code + payload)
    outcome = execute(function_code, payload)
    assert result.error_details is not None
    assert result.error_details.code == outcome.error_code == "MaxResultSizeExceeded"
    assert outcome.data == result.data
    assert result.error_details.user_message == "remote error: " + outcome.error_message


def test_execute_output_for_sdk_serialized_function_loads_in_sdk() -> None:
    for strategy in (DillCode(), PureSourceTextInspect(), AllCodeStrategies()):
        serde = ComputeSerializer(strategy_code=strategy)
        function_code = serde.pack_buffers([serde.serialize(greet)])
        payload = serde.pack_buffers([serde.serialize(("wörld",)), serde.serialize({})])
        outcome = execute(function_code, payload)
        assert outcome.error_code == "", outcome.data
        assert SDK.deserialize(outcome.data) == "héllo ✓ wörld"

    function_code = SDK.pack_buffers([SDK.serialize(raise_direct)])
    payload = SDK.pack_buffers([SDK.serialize(("boom",)), SDK.serialize({})])
    outcome = execute(function_code, payload)
    assert outcome.error_code == "RemoteExecutionError"
    assert same_exception(SDK.deserialize(outcome.exception), ValueError("boom"))
