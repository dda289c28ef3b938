"""How a failed task surfaces in the client: one exception both SDK and fxgate scripts catch.

Unit level, from the task events the daemon sends (the local upstream ships the
exception object; a Globus Compute endpoint only its traceback text). The
end-to-end case is in test_tasks.py.
"""

from __future__ import annotations

import pickle
import traceback

import pytest

from client import (
    ComputeError,
    MaxResultSizeExceeded,
    SerdeError,
    SerializationError,
    TaskExecutionFailed,
    VersionMismatch,
)
from client.futures import remote_exception
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract.serialize import serialize_data
from tests.daemon import DaemonProcess


class NeedsTwo(Exception):
    """An exception whose __init__ gives its args a meaning other than its parameters."""

    def __init__(self, code: int, where: str = "?") -> None:
        super().__init__(f"{code} at {where}")
        self.code = code


def _traceback_of(exc: BaseException) -> str:
    try:
        raise exc
    except BaseException as raised:  # noqa: BLE001
        return "".join(traceback.format_exception(raised))


def failed(exc: BaseException | None, text: str = "") -> pb.TaskEvent:
    """A failed task event, with the exception object shipped (as the local upstream does)."""
    return pb.TaskEvent(
        task_id="t",
        state=pb.TASK_STATE_FAILED,
        data=text or (_traceback_of(exc) if exc else ""),
        exception=serialize_data(exc) if exc is not None else "",
        completed_at=1700000000.5,
    )


def test_a_shipped_builtin_is_both_types_with_the_traceback_as_text() -> None:
    raised = remote_exception(failed(ValueError("boom")))
    assert isinstance(raised, ValueError) and isinstance(raised, TaskExecutionFailed)
    assert type(raised).__name__ == "ValueError"
    assert raised.args == ("boom",)
    assert "Traceback" in str(raised) and "ValueError: boom" in str(raised)
    assert raised.completion_t == "1700000000.5"
    with pytest.raises(TaskExecutionFailed):
        raise raised
    with pytest.raises(ValueError, match="boom"):
        raise raised


def test_a_user_exception_keeps_its_type_and_attributes() -> None:
    raised = remote_exception(failed(NeedsTwo(7, "here")))
    assert isinstance(raised, NeedsTwo) and isinstance(raised, TaskExecutionFailed)
    assert raised.code == 7  # type: ignore[attr-defined]
    assert raised.args[0].startswith("7 at here")  # as dill rebuilt the shipped object


def test_only_the_traceback_text_rebuilds_a_builtin() -> None:
    """A Globus Compute endpoint sends the traceback only."""
    text = _traceback_of(KeyError("missing"))
    raised = remote_exception(failed(None, text))
    assert isinstance(raised, KeyError) and isinstance(raised, TaskExecutionFailed)
    assert raised.remote_data == text


def test_an_unknown_type_in_the_text_is_a_plain_task_execution_failed() -> None:
    text = "Traceback (most recent call last):\n  ...\nmymodule.Weird: odd\n"
    raised = remote_exception(failed(None, text))
    assert type(raised) is TaskExecutionFailed
    assert raised.remote_data == text


def test_a_base_exception_is_not_raised_as_one() -> None:
    """SystemExit in a task must not end the script that reads its result."""
    raised = remote_exception(failed(SystemExit(3)))
    assert type(raised) is TaskExecutionFailed
    assert "SystemExit" in raised.remote_data


def test_max_result_size_exceeded_is_rebuilt_from_the_endpoints_text() -> None:
    text = _traceback_of(MaxResultSizeExceeded(20_000_000, 10_485_760))
    raised = remote_exception(failed(None, text))
    assert isinstance(raised, MaxResultSizeExceeded) and isinstance(raised, TaskExecutionFailed)
    assert (raised.result_size, raised.result_size_limit) == (20_000_000, 10_485_760)
    assert str(MaxResultSizeExceeded(5, 4)) == "Task result of 5B exceeded current limit of 4B"


def test_a_combined_failure_pickles_with_both_types_and_its_fields() -> None:
    raised = remote_exception(failed(NeedsTwo(7, "here")))
    again = pickle.loads(pickle.dumps(raised))
    assert isinstance(again, NeedsTwo) and isinstance(again, TaskExecutionFailed)
    assert again.code == 7 and again.remote_data == raised.remote_data
    plain = pickle.loads(pickle.dumps(TaskExecutionFailed("tb", "1.0")))
    assert (plain.remote_data, plain.completion_t) == ("tb", "1.0")


def test_serialization_failures_carry_the_hint() -> None:
    text = "Traceback (most recent call last):\n_pickle.PicklingError: cannot pickle\n"
    assert "serialization problem" in str(TaskExecutionFailed(text))
    assert "serialization problem" not in str(TaskExecutionFailed("ValueError: x"))


def test_sdk_error_names_catch_what_the_sdks_do() -> None:
    with pytest.raises(SerdeError):
        raise SerializationError("x")
    with pytest.raises(ComputeError):
        raise VersionMismatch("endpoint 3.11, client 3.12")
    assert "3.11" in str(VersionMismatch("endpoint 3.11, client 3.12"))


@pytest.mark.parametrize("key", ["container_id", "funcx_client", "batch_interval", "batch_enabled"])
def test_funcx_executor_keywords_are_refused_as_the_sdk_refuses_them(key: str) -> None:
    """A container or another client would change where or how a task runs: the SDK's
    TypeError, never dropped."""
    from client import Executor

    with pytest.raises(TypeError, match=f"'{key}' is an invalid argument for Executor"):
        Executor(endpoint_id="local", address="unix:///nonexistent.sock", **{key: "x"})


def _raises_value_error(n: int) -> int:
    raise ValueError(f"bad n: {n}")


def test_scripts_catching_either_type_both_work_on_one_real_failure(daemon: DaemonProcess) -> None:
    """One failed task through a real daemon and worker: `except TaskExecutionFailed`
    (SDK 2.x+ scripts) and `except ValueError` (funcX-era scripts) both catch it."""
    from client import Executor, TaskExecutionFailed

    with Executor(endpoint_id="local", address=daemon.address) as ex:
        fut = ex.submit(_raises_value_error, 3)
        try:
            fut.result(timeout=60)
        except TaskExecutionFailed as exc:
            as_sdk = exc
        try:
            fut.result(timeout=60)
        except ValueError as exc:
            as_funcx = exc
    assert as_sdk is as_funcx
    assert "bad n: 3" in str(as_sdk) and "Traceback" in str(as_sdk)
