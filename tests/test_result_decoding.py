"""Result messages: the fast path agrees with globus-compute-common on every real message."""

from __future__ import annotations

import random
import uuid

import pytest
from globus_compute_common import messagepack
from globus_compute_common.messagepack.message_types import Result, ResultErrorDetails, Task

from fxgate_contract.states import TaskState
from gateway.upstreams.globus.results import (
    _SUCCESS_BYTES,
    EXACT_MATCH_BYTES,
    MAX_MESSAGE_BYTES,
    _decode_plain_result,
    decode,
)


def library_view(body: bytes) -> tuple[str, str, str, str]:
    m = messagepack.unpack(body)
    assert isinstance(m, Result)
    d = m.error_details
    return str(m.task_id), m.data, d.code if d else "", d.user_message if d else ""


@pytest.mark.parametrize(
    "result",
    [
        Result(task_id=uuid.uuid4(), data="00\ngASVBAAAAAAAAABNOTAu\n"),
        Result(task_id=uuid.uuid4(), data='11\n"h\\u00e9"'),
        Result(task_id=uuid.uuid4(), data='q"uo\\te\\n \u2603\x01\t"'),
        Result(task_id=uuid.uuid4(), data=""),
        Result(task_id=uuid.uuid4(), data="\\"),
        Result(task_id=uuid.uuid4(), data="a\nb\\nc\n"),
        Result(task_id=uuid.uuid4(), data="\\\n"),
        Result(task_id=uuid.uuid4(), data="00\n" + "A" * 70_000),
        Result(
            task_id=uuid.uuid4(),
            data="Traceback (most recent call last):\nValueError: x",
            details={"os": "Linux", "python_version": "3.11"},
            error_details=ResultErrorDetails(code="RemoteExecutionError", user_message="boom"),
            task_statuses=[],
        ),
    ],
)
def test_fast_path_reads_what_the_library_reads(result: Result) -> None:
    body = messagepack.pack(result)
    fast = _decode_plain_result(body, 12.5)
    assert fast is not None
    assert (fast.upstream_task_id, fast.data, fast.error_code, fast.error_message) == library_view(
        body
    )
    assert fast.state == (TaskState.FAILED if result.error_details else TaskState.SUCCESS)
    assert fast.completed_at == 12.5


def test_plain_successes_take_the_exact_bytes_path() -> None:
    small = messagepack.pack(Result(task_id=uuid.uuid4(), data='00\nq"\\\n'))
    assert len(small) <= EXACT_MATCH_BYTES and _SUCCESS_BYTES.match(small) is not None
    failed = Result(
        task_id=uuid.uuid4(),
        data="Traceback",
        error_details=ResultErrorDetails(code="RemoteExecutionError", user_message="boom"),
    )
    assert _SUCCESS_BYTES.match(messagepack.pack(failed)) is None


def _exact_shape(data: bytes) -> bytes:
    """A body in the exact shape of a success, with `data` as its raw JSON string body."""
    return (
        b'\x01{"message_type":"result","data":{"task_id":"'
        + str(uuid.uuid4()).encode()
        + b'","data":"'
        + data
        + b'","details":null,"error_details":null,"task_statuses":null}}'
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x01{not json", "undecodable message"),
        (b"\x02{}", "unknown protocol version"),
        (messagepack.pack(Task(task_id=uuid.uuid4(), task_buffer="x")), "not a result message"),
        (b'\x01{"message_type":"result","data":{"task_id":"zz","data":"x"}}', "valid UUID"),
        (b"\x01" + b"x" * (MAX_MESSAGE_BYTES + 1), "over the"),
        (b"", "undecodable message"),
        (_exact_shape(b"\xff\xfe"), "UnicodeDecodeError"),
        (_exact_shape(b"a\nb"), "Invalid control character"),
        (_exact_shape(b"bad \\x escape"), "Invalid \\escape"),
    ],
)
def test_unusable_messages_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    completion, problem = decode(body, None)
    assert completion is None
    assert reason in problem


def test_exact_bytes_path_agrees_with_the_library_on_random_text() -> None:
    rng = random.Random(5)
    alphabet = ["a", "\n", "\\", '"', "n", "\t", "é", "\x01", "/", "\x7f", "☃", "u"]
    for _ in range(2000):
        data = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        body = messagepack.pack(Result(task_id=uuid.uuid4(), data=data))
        completion, problem = decode(body, None)
        assert completion is not None, problem
        assert (completion.upstream_task_id, completion.data) == library_view(body)[:2]
