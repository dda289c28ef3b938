"""Run one Globus Compute task in a worker process and describe what happened.

Why a module of its own: running a task means unpickling and calling arbitrary user code,
which may crash, hang, leak memory or change process state (cwd, environment, signal
handlers). The daemon therefore calls :func:`execute` only from its local worker
processes, never from its main process. It mirrors what globus-compute-endpoint's
``engines/helper.py`` ``execute_task`` does with a task buffer (spec section 4.5), without
importing the endpoint, and it never raises: every outcome -- a result, a user exception,
unusable bytes, an oversized result -- comes back as an :class:`Outcome` the worker can
always report.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fxgate_contract.serialize import deserialize, serialize_data, serialize_result, unpack_buffers
from gateway.mpi_launch import is_mpi_function, mpi_launcher

RESULT_SIZE_LIMIT = 10 * 1024 * 1024  # characters of serialized result, as the endpoint
USER_ERROR = "RemoteExecutionError"
BAD_TASK = "CouldNotExecuteUserTaskError"
TOO_LARGE = "MaxResultSizeExceeded"


@dataclass(frozen=True)
class Outcome:
    """What running a task produced, ready to become a Result message."""

    data: str  # serialized result on success; traceback text on failure
    error_code: str = ""  # "" on success, else USER_ERROR, BAD_TASK or TOO_LARGE
    error_message: str = ""  # short message for people, e.g. "ValueError: boom"
    exception: str = ""  # serialize_data(exc) of the raised exception when possible, else ""


class _BadTask(Exception):
    """The task bytes cannot be turned into a call; the message is for people."""


def execute(
    function_code: str,
    payload: str,
    result_serializers: Sequence[str] = (),
    resource_specification: str = "",
) -> Outcome:
    """Run ``fn(*args, **kwargs)`` from a registration's function_code and a task payload.

    The two strings are concatenated into the three-piece task buffer a real endpoint
    receives. An MPIFunction runs under the launcher its resource_specification (JSON
    text) describes, or fails before it starts (gateway.mpi_launch). Returns an
    :class:`Outcome`; never raises (``KeyboardInterrupt`` aside).
    """
    try:
        fn, args, kwargs = _load_task(function_code, payload)
    except _BadTask as e:
        return _internal_error(BAD_TASK, str(e), repr(str(e)))
    try:
        if is_mpi_function(fn):
            with mpi_launcher(resource_specification):
                value = fn(*args, **kwargs)
        else:
            value = fn(*args, **kwargs)
    except (Exception, SystemExit) as e:
        return _user_error(e)
    try:
        data = serialize_result(value, result_serializers)
    except Exception as e:
        text = "".join(traceback.format_exception_only(e))
        return Outcome(data=text, error_code=USER_ERROR, error_message=_describe(e))
    if len(data) > RESULT_SIZE_LIMIT:
        message = f"Task result of {len(data)}B exceeded current limit of {RESULT_SIZE_LIMIT}B"
        return _internal_error(TOO_LARGE, message, f"{len(data)}, {RESULT_SIZE_LIMIT}")
    return Outcome(data=data)


def _load_task(
    function_code: str, payload: str
) -> tuple[Callable[..., Any], Sequence[Any], dict[str, Any]]:
    if not isinstance(function_code, str) or not isinstance(payload, str):
        raise _BadTask("function code and payload must be strings")
    try:
        pieces = unpack_buffers(function_code + payload)
    except Exception as e:
        raise _BadTask(f"task buffer is not a valid pack: {e}") from e
    if len(pieces) != 3:
        raise _BadTask(
            f"task buffer must hold 3 pieces (function, args, kwargs), got {len(pieces)}"
        )
    loaded: list[Any] = []
    for what, piece in zip(("function", "args", "kwargs"), pieces, strict=True):
        try:
            loaded.append(deserialize(piece))
        except Exception as e:
            raise _BadTask(f"could not deserialize the {what}: {e}") from e
    fn, args, kwargs = loaded
    if not callable(fn):
        raise _BadTask(f"the function piece holds a {type(fn).__name__}, not a callable")
    if not isinstance(args, list | tuple):
        raise _BadTask(f"args must be a tuple or list, got {type(args).__name__}")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise _BadTask("kwargs must be a dict with str keys")
    return fn, args, kwargs


def _user_error(exc: BaseException) -> Outcome:
    # the traceback starts in execute(); drop that frame so it starts at the user function
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code is execute.__code__:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        serialized = serialize_data(exc)
    except Exception:
        serialized = ""
    return Outcome(text, USER_ERROR, _describe(exc), serialized)


def _internal_error(code: str, message: str, repr_args: str) -> Outcome:
    # data mirrors the endpoint, which sends repr() of its internal exception
    return Outcome(data=f"{code}({repr_args})", error_code=code, error_message=message)


def _describe(exc: BaseException) -> str:
    try:
        message = str(exc)
    except Exception:
        message = "<str() failed>"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
