"""fxgate_contract.serialize, client.errors and gateway.execution alone (no globus packages)."""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Callable
from typing import Any

import dill
import pytest

from client.errors import (
    DeserializationError,
    FxgateError,
    SerializationError,
    TaskExecutionFailed,
    TaskPending,
)
from fxgate_contract.serialize import (
    deserialize,
    pack_buffers,
    pack_function,
    pack_payload,
    serialize,
    serialize_code,
    serialize_data,
    serialize_result,
    unpack_buffers,
)
from gateway.execution import RESULT_SIZE_LIMIT, Outcome, execute
from tests.samples import add

JSON = "globus_compute_sdk.serialize.JSONData"
DILL_DATA = "globus_compute_sdk.serialize.concretes.DillDataBase64"


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def call_raiser(message: str) -> None:
    raise_value_error(message)


def b64(obj: Any, dumps: Callable[[Any], bytes] = dill.dumps) -> str:
    return codecs.encode(dumps(obj), "base64").decode()


# -- pack_buffers / unpack_buffers ---------------------------------------------------------


def test_pack_format_is_length_newline_item() -> None:
    assert pack_buffers(["ab", "", "c\nd"]) == "2\nab0\n3\nc\nd"


@pytest.mark.parametrize(
    "items",
    [[], [""], ["a"], ["", ""], ["12\n34", "5\n"], ["x" * 1000, "y"], ["é✓", "😀\n😀"]],
)
def test_pack_unpack_round_trip(items: list[str]) -> None:
    assert unpack_buffers(pack_buffers(items)) == items


def test_pack_lengths_count_code_points_not_bytes() -> None:
    item = "st\nf:def f():\n    return 'héllo ✓ 😀'\n"
    packed = pack_buffers([item, "11\n1"])
    assert packed.startswith(f"{len(item)}\n")
    assert len(item) != len(item.encode())  # the test means something only if they differ
    assert unpack_buffers(packed) == [item, "11\n1"]


@pytest.mark.parametrize(
    ("packed", "message"),
    [
        ("abc", "no newline"),
        ("3\nabc2", "no newline"),
        ("x\nabc", "not a decimal number"),
        ("-1\na", "not a decimal number"),
        ("+1\na", "not a decimal number"),
        (" 1\na", "not a decimal number"),
        ("\na", "not a decimal number"),
        ("١\na", "not a decimal number"),  # an Arabic-Indic digit
        ("5\nab", "truncated pack"),
        ("2\nab9\nxyz", "truncated pack"),
    ],
)
def test_unpack_rejects_malformed_input(packed: str, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        unpack_buffers(packed)


# -- data and code -------------------------------------------------------------------------

DATA_VALUES = [
    0,
    -1,
    2**100,
    1.5,
    None,
    "",
    "héllo ✓ 😀",
    b"\x00bytes",
    [1, (2, 3), {"a": {4, 5}, "b": [None, True]}],
    ValueError("boom"),
]


@pytest.mark.parametrize("value", DATA_VALUES, ids=repr)
def test_data_round_trip(value: Any) -> None:
    text = serialize_data(value)
    assert text.startswith("00\n")
    loaded = deserialize(text)
    if isinstance(value, Exception):
        assert type(loaded) is type(value) and loaded.args == value.args
    else:
        assert loaded == value


def test_data_body_is_mime_base64() -> None:
    body = serialize_data("x" * 500)[3:]
    lines = body.split("\n")
    assert body.endswith("\n") and lines[-1] == ""
    assert all(len(line) == 76 for line in lines[:-2]) and 0 < len(lines[-2]) <= 76


def make_scaled_sum(n: int) -> Callable[[int, int], int]:
    def scaled_sum(a: int, b: int) -> int:
        return n * (a + b)

    return scaled_sum


@pytest.mark.parametrize(
    "fn",
    [add, make_scaled_sum(10), lambda a, b, c=0: a * b - c, max],
    ids=["plain", "closure", "lambda", "builtin"],
)
def test_code_round_trip(fn: Callable[..., int]) -> None:
    text = serialize_code(fn)
    assert text.startswith("01\n")
    assert deserialize(text)(3, 4) == fn(3, 4)


def test_serialize_picks_code_iff_callable() -> None:
    class Doubler:
        def __call__(self, x: int) -> int:
            return 2 * x

    assert serialize(add).startswith("01\n")
    assert serialize(Doubler()).startswith("01\n")
    assert serialize([add]).startswith("00\n")
    assert deserialize(serialize(Doubler()))(4) == 8


def test_serialize_code_refuses_non_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        serialize_code(5)  # type: ignore[arg-type]


def test_serialize_data_wraps_dill_failures() -> None:
    with pytest.raises(SerializationError, match="generator"):
        serialize_data(x for x in range(3))


# -- deserialize: every strategy id --------------------------------------------------------

SOURCE = "def f(x):\n    return x + 1\n"
NON_ASCII_SOURCE = "def greet(name):\n    return 'héllo ✓ ' + name\n"


@pytest.mark.parametrize(
    ("text", "arg", "expected"),
    [
        ("00\n" + b64(41), None, 41),
        ("01\n" + b64(add), (1, 2), 3),
        ("02\n" + b64(max, pickle.dumps), (1, 2), 2),
        ("03\n" + b64(("f", SOURCE)), (1,), 2),
        ("04\n" + b64(("f", SOURCE)), (1,), 2),
        ("10\n04\n:" + b64(("f", SOURCE)) + ":01\n:" + b64(add), (1,), 2),
        ("10\nst\n:garbage:01\n:" + b64(add), (1, 2), 3),  # first part fails, second loads
        ('11\n[1, "\\u00e9"]', None, [1, "é"]),
        ("12\n" + pack_buffers(["st\nf:" + SOURCE, "01\n" + b64(add)]), (1,), 2),
        ("12\n" + pack_buffers(["st\nf:raise X", "01\n" + b64(add)]), (1, 2), 3),
        ("13\n" + pack_buffers(['11\n{"a": 1}', "00\n" + b64({"a": 2})]), None, {"a": 1}),
        ("13\n" + pack_buffers(["11\n{bad", "00\n" + b64({"a": 2})]), None, {"a": 2}),
        ("st\nf:" + SOURCE, (1,), 2),
        ("sd\nf:" + SOURCE, (1,), 2),
        ("st\ngreet:" + NON_ASCII_SOURCE, ("x",), "héllo ✓ x"),
    ],
)
def test_deserialize_each_strategy(text: str, arg: tuple[Any, ...] | None, expected: Any) -> None:
    loaded = deserialize(text)
    assert (loaded if arg is None else loaded(*arg)) == expected


def test_non_ascii_source_survives_a_pack() -> None:
    item = "st\ngreet:" + NON_ASCII_SOURCE
    (unpacked,) = unpack_buffers(pack_buffers([item]))
    assert deserialize(unpacked)("y") == "héllo ✓ y"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "unknown serialization strategy id ''"),
        ("zz\nabc", "unknown serialization strategy id 'zz\\\\n'"),
        ("00", "unknown serialization strategy id"),
        ("00\nnot base64!", "DillDataBase64 payload could not be loaded"),
        ("00\n", "DillDataBase64 payload could not be loaded: EOFError"),
        ("01\n✓", "DillCode payload could not be loaded: ValueError: .*only ASCII"),
        ("11\n{bad", "JSONData payload could not be loaded: JSONDecodeError"),
        ("st\nno colon here", "no 'name:' prefix"),
        ("st\ng:def f(): pass", "does not define 'g'"),
        ("sd\nf:def f(:", "SyntaxError"),
        ("12\n5\nab", "truncated pack"),
        ("13\n" + pack_buffers(["11\n{", "zz\n"]), "JSONDecodeError.*unknown serialization"),
        ("10\n04\n:AAAA", "no CombinedCode part could be loaded"),
    ],
)
def test_deserialize_rejects_malformed_input(text: str, message: str) -> None:
    with pytest.raises(DeserializationError, match=message):
        deserialize(text)


def test_error_hierarchy() -> None:
    """The SDK's: both serialization errors are SerdeErrors, and siblings."""
    from client import SerdeError

    assert issubclass(DeserializationError, SerdeError) and issubclass(
        SerializationError, SerdeError
    )
    assert not issubclass(DeserializationError, SerializationError)
    assert issubclass(SerializationError, FxgateError)
    assert issubclass(TaskExecutionFailed, FxgateError) and issubclass(TaskPending, FxgateError)


# -- pack_function / pack_payload ----------------------------------------------------------


def test_pack_function_is_a_pack_of_one_dill_code_item() -> None:
    (item,) = unpack_buffers(pack_function(add))
    assert item == serialize_code(add)


def test_pack_payload_is_args_then_kwargs() -> None:
    args_text, kwargs_text = unpack_buffers(pack_payload((1, "é"), {"c": [3]}))
    assert deserialize(args_text) == (1, "é")
    assert deserialize(kwargs_text) == {"c": [3]}
    assert deserialize(unpack_buffers(pack_payload([1], {}))[0]) == [1]  # lists stay lists


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ("ab", {}, "args: expected tuple or list, got str"),
        ({1: 2}, {}, "args: expected tuple or list, got dict"),
        ((), [("a", 1)], "kwargs: expected dict, got list"),
        ((), {"a": 1, 2: 3}, "kwargs: keys must be str, got int"),
    ],
)
def test_pack_payload_type_errors(args: Any, kwargs: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        pack_payload(args, kwargs)


# -- serialize_result ----------------------------------------------------------------------


def test_serialize_result_defaults_to_dill_data_then_dill_code() -> None:
    assert serialize_result([1, 2]) == serialize_data([1, 2])
    assert serialize_result(add) == serialize_code(add)


def test_serialize_result_tries_listed_strategies_in_order() -> None:
    assert serialize_result([1, "é"], [JSON, DILL_DATA]) == '11\n[1, "\\u00e9"]'
    assert serialize_result({1, 2}, [JSON, DILL_DATA]) == serialize_data({1, 2})  # not JSON
    assert serialize_result(5, ["DillCode", "JSONData"]) == "11\n5"  # wrong kind is skipped
    assert serialize_result(5, ["x.NoSuchStrategy", "JSONData"]) == "11\n5"
    assert serialize_result(add, [JSON, "globus_compute_sdk.serialize.DillCode"]).startswith("01\n")


def test_serialize_result_other_strategies_load_back() -> None:
    for name in ("AllDataStrategies", "DillDataBase64", "JSONData"):
        assert deserialize(serialize_result({"k": [1]}, [name])) == {"k": [1]}
    for name in ("AllCodeStrategies", "CombinedCode", "DillCodeSource", "DillCodeTextInspect"):
        assert deserialize(serialize_result(add, [name]))(1, 2) == 3
    assert serialize_result(call_raiser, ["PureSourceTextInspect"]) == (
        "st\ncall_raiser:def call_raiser(message: str) -> None:\n    raise_value_error(message)\n"
    )


@pytest.mark.parametrize(
    ("value", "strategies", "message"),
    [
        ({1}, [JSON], "JSONData: TypeError: Object of type set"),
        (add, [JSON], "JSONData: is a data strategy"),
        (5, ["DillCode"], "DillCode: is a code strategy"),
        (add, ["PickleCode"], "PickleCode: .*deserialize-only"),
        (5, ["Nope"], "Nope: not a known serialization strategy"),
        ((x for x in ()), [], "generator: DillDataBase64: TypeError"),
    ],
)
def test_serialize_result_failures(value: Any, strategies: list[str], message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        serialize_result(value, strategies)


# -- client.errors -------------------------------------------------------------------------


def test_task_execution_failed_indents_remote_traceback() -> None:
    err = TaskExecutionFailed("Traceback:\nValueError: x", "123.5", {"a": 1})
    assert str(err) == "\n Traceback:\n ValueError: x"
    assert (err.remote_data, err.completion_t, err.task_details) == (
        "Traceback:\nValueError: x",
        "123.5",
        {"a": 1},
    )
    float(TaskExecutionFailed("x").completion_t)  # filled in with the current time
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.remote_data, copy.completion_t, copy.task_details) == (
        "Traceback:\nValueError: x",
        "123.5",
        {"a": 1},
    )


def test_task_pending_keeps_reason() -> None:
    err = TaskPending("waiting-for-ep")
    assert err.reason == "waiting-for-ep" and "waiting-for-ep" in str(err)


# -- gateway.execution.execute -------------------------------------------------------------


def test_execute_success() -> None:
    outcome = execute(pack_function(add), pack_payload((1, 2), {"c": 3}))
    assert outcome.error_code == "" and outcome.error_message == "" and outcome.exception == ""
    assert deserialize(outcome.data) == 6
    assert outcome.data == serialize_data(6)


def test_execute_honours_result_serializers() -> None:
    outcome = execute(pack_function(add), pack_payload((1, 2), {}), [JSON])
    assert outcome == Outcome(data="11\n3")


def test_execute_user_exception_traceback_starts_at_user_function() -> None:
    outcome = execute(pack_function(call_raiser), pack_payload(("boom",), {}))
    assert outcome.error_code == "RemoteExecutionError"
    assert outcome.error_message == "ValueError: boom"
    lines = outcome.data.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].endswith(", in call_raiser")  # first frame: the user function
    assert "gateway/execution.py" not in outcome.data
    assert ", in raise_value_error" in outcome.data  # ...and the frames below it
    assert lines[-1] == "ValueError: boom"
    exc = deserialize(outcome.exception)
    assert type(exc) is ValueError and exc.args == ("boom",)


def test_execute_call_signature_error_has_no_wrapper_frames() -> None:
    outcome = execute(pack_function(add), pack_payload((1,), {}))
    assert outcome.error_code == "RemoteExecutionError"
    assert outcome.data.startswith("TypeError: add() missing 1 required positional argument")
    assert outcome.error_message.startswith("TypeError: add() missing")


def raise_unpicklable() -> None:
    raise ValueError(x for x in ())


def exit_three() -> None:
    raise SystemExit(3)


def test_execute_unpicklable_exception_leaves_exception_empty() -> None:
    outcome = execute(pack_function(raise_unpicklable), pack_payload((), {}))
    assert outcome.error_code == "RemoteExecutionError"
    assert outcome.error_message.startswith("ValueError: <generator object")
    assert outcome.exception == ""


def test_execute_catches_system_exit() -> None:
    outcome = execute(pack_function(exit_three), pack_payload((), {}))
    assert (outcome.error_code, outcome.error_message) == ("RemoteExecutionError", "SystemExit: 3")


def return_generator() -> Any:
    return (x for x in ())


def test_execute_unserializable_result() -> None:
    outcome = execute(pack_function(return_generator), pack_payload((), {}))
    assert outcome.error_code == "RemoteExecutionError"
    assert outcome.error_message.startswith("SerializationError: no result serializer")
    assert outcome.data.startswith(
        "fxgate_contract.errors.SerializationError: no result serializer"
    )


def _bad(message: str) -> tuple[str, str]:
    return ("CouldNotExecuteUserTaskError", message)


@pytest.mark.parametrize(
    ("function_code", "payload", "message"),
    [
        ("garbage", "", "task buffer is not a valid pack: malformed pack"),
        (pack_function(add), "9\nabc", "task buffer is not a valid pack: truncated pack"),
        (pack_function(add), "", "must hold 3 pieces (function, args, kwargs), got 1"),
        (pack_function(add) * 2, pack_payload((), {}), "got 4"),
        (pack_buffers(["zz\nxx"]), pack_payload((), {}), "could not deserialize the function"),
        (pack_function(add), pack_buffers(["00\n!!", "11\n{}"]), "deserialize the args"),
        (pack_buffers([serialize_data(5)]), pack_payload((), {}), "holds a int, not a callable"),
        (pack_function(add), pack_buffers(['11\n"ab"', "11\n{}"]), "args must be a tuple"),
        (pack_function(add), pack_buffers(["11\n[]", serialize_data({1: 2})]), "str keys"),
        (b"1\nx", "", "must be strings"),
    ],
)
def test_execute_bad_bytes(function_code: Any, payload: str, message: str) -> None:
    outcome = execute(function_code, payload)
    assert (outcome.error_code, outcome.exception) == ("CouldNotExecuteUserTaskError", "")
    assert message in outcome.error_message
    assert outcome.data == f"CouldNotExecuteUserTaskError({outcome.error_message!r})"


def make_string(n: int) -> str:
    return "x" * n


def test_execute_result_size_limit_is_inclusive() -> None:
    # JSONData result is "11\n" + '"' + n characters + '"', so n = limit - 5 fits exactly
    at_limit = execute(
        pack_function(make_string), pack_payload((RESULT_SIZE_LIMIT - 5,), {}), [JSON]
    )
    assert at_limit.error_code == "" and len(at_limit.data) == RESULT_SIZE_LIMIT
    over = execute(pack_function(make_string), pack_payload((RESULT_SIZE_LIMIT - 4,), {}), [JSON])
    assert over == Outcome(
        data=f"MaxResultSizeExceeded({RESULT_SIZE_LIMIT + 1}, {RESULT_SIZE_LIMIT})",
        error_code="MaxResultSizeExceeded",
        error_message=f"Task result of {RESULT_SIZE_LIMIT + 1}B exceeded current limit of"
        f" {RESULT_SIZE_LIMIT}B",
    )


def test_execute_oversize_default_serializer() -> None:
    outcome = execute(pack_function(make_string), pack_payload((RESULT_SIZE_LIMIT,), {}))
    assert outcome.error_code == "MaxResultSizeExceeded"
    assert outcome.data.startswith("MaxResultSizeExceeded(")


@pytest.mark.parametrize(
    "value",
    [
        (5,),
        {},
        {"a": [1, 2.5, "x", None, True, b"b"]},
        ("é" * 100, 10**30, -1.5e300, frozenset({1, 2}), {3, 4}),
        [list(range(100))] * 3,  # shared references are memoized alike
        ("x" * 100_000,),
        [[[[[]]]]],
    ],
)
def test_plain_data_fast_path_writes_the_same_bytes_as_dill(value: Any) -> None:
    assert serialize_data(value) == "00\n" + b64(value)


@pytest.mark.parametrize("n", range(30, 80))
def test_one_line_base64_matches_the_wrapped_form_at_every_length(n: int) -> None:
    # pickles of 45 to 94 bytes: either side of the 57 bytes that fill one 76-character line
    assert serialize_data("x" * n) == "00\n" + b64("x" * n)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"c__builtin__\nNoneType\n.", type(None)),  # dill's own name for it
        (b"cdill.dill\n_get_attr\n.", dill._dill._get_attr),  # dill's old module name
    ],
)
def test_pickles_naming_dill_globals_load_through_dill(raw: bytes, expected: Any) -> None:
    # the standard library's unpickler cannot resolve either name
    with pytest.raises((AttributeError, ModuleNotFoundError)):
        pickle.loads(raw)
    assert deserialize("00\n" + codecs.encode(raw, "base64").decode()) is expected


def test_dill_pickled_function_loads() -> None:
    body = b64(lambda x: x + 1)  # by value: names dill._dill
    assert deserialize("01\n" + body)(1) == 2
