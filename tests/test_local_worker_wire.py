"""The messages between the daemon and its local workers: named, and on the wire as before.

gateway/upstreams/local_worker.py's Job and Done are read by field name at
both ends; on the wire they stay the positional JSON arrays behind a 4-byte
length that workers of the previous release wrote and read.
"""

from __future__ import annotations

import json

import pytest

from gateway.upstreams.local_worker import HEADER, Done, Job, encode


def framed(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


def test_a_batch_of_jobs_is_a_json_array_of_positional_arrays() -> None:
    batch = [
        Job("t1", "f1", "1\ncode", "payload", ["a.JSONData"], '{"num_ranks": 2}'),
        Job("t2", "f1", "", "p2", []),
    ]
    expected = (
        b'[["t1","f1","1\\ncode","payload",["a.JSONData"],"{\\"num_ranks\\": 2}"],'
        b'["t2","f1","","p2",[],""]]'
    )
    assert encode(batch) == framed(expected)
    decoded = [Job.from_json(item) for item in json.loads(expected)]
    assert decoded == batch
    assert decoded[0].function_code == "1\ncode" and decoded[1].result_serializers == []


def test_an_outcome_is_one_positional_array() -> None:
    done = Done("t1", "00\ndata", "RemoteExecutionError", "ValueError: boom", "00\nexc")
    expected = b'["t1","00\\ndata","RemoteExecutionError","ValueError: boom","00\\nexc"]'
    assert encode(done) == framed(expected)
    decoded = Done.from_json(json.loads(expected))
    assert decoded == done
    assert decoded is not None and decoded.error_code == "RemoteExecutionError"


@pytest.mark.parametrize(
    "message",
    [
        None,
        "t1",
        {"task_id": "t1"},
        ["t1", "data", "", ""],  # a field short
        ["t1", "data", "", "", "", ""],  # one too many
        ["t1", "data", "", "", 5],  # not text
        ["t1", None, "", "", ""],
        [["t1"], "data", "", "", ""],
    ],
)
def test_anything_else_from_a_worker_is_not_an_outcome(message: object) -> None:
    """A worker runs user code: what it writes is checked before the daemon uses it."""
    assert Done.from_json(message) is None
