"""What client and daemon share agrees with the proto and with itself.

fxgate_contract keeps one copy of the task states and of the serialization
strategy table; these tests hold the copies that cannot be imported (the
generated proto enum, the codecs in serialize.py) equal to them.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from fxgate_contract import serialize
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract.framing import unpack_buffers
from fxgate_contract.states import UNFINISHED, TaskState
from fxgate_contract.strategies import (
    BY_ID,
    BY_NAME,
    CODE_IDS,
    DATA_IDS,
    HEADER_LENGTH,
    STRATEGIES,
)

PROTO_PREFIX = "TASK_STATE_"
# A sub-id in a CombinedCode body: two characters and "\n" between ":"s (or first).
COMBINED_SUB_ID = re.compile(r"(?:^|:)([^:\n]{2}\n):")


def add(a: int, b: int) -> int:
    return a + b


def test_task_states_are_the_proto_enum_exactly() -> None:
    proto = {
        name.removeprefix(PROTO_PREFIX): number
        for name, number in pb.TaskState.items()
        if name != "TASK_STATE_UNSPECIFIED"
    }
    assert proto == {s.name: s.value for s in TaskState}
    assert pb.TaskState.Value("TASK_STATE_UNSPECIFIED") == 0
    assert 0 not in {s.value for s in TaskState}  # an unset field is never a state


def test_finished_and_unfinished_split_the_states() -> None:
    finished = {s for s in TaskState if s.finished}
    assert finished == {TaskState.SUCCESS, TaskState.FAILED, TaskState.CANCELLED}
    assert set(UNFINISHED) == set(TaskState) - finished


def test_strategy_ids_are_three_characters_ending_in_a_newline_and_unique() -> None:
    ids = [s.identifier for s in STRATEGIES]
    assert all(len(i) == HEADER_LENGTH and i.endswith("\n") for i in ids), ids
    assert all("\n" not in i[:-1] for i in ids), ids
    assert len(set(ids)) == len(ids)
    assert len(BY_NAME) == len(STRATEGIES)  # names unique too
    assert set(BY_ID) == CODE_IDS | DATA_IDS and not CODE_IDS & DATA_IDS


def test_serialize_has_a_codec_for_exactly_the_table() -> None:
    """Every id serialize.py loads or dumps by is in the table, and every one there has a codec."""
    assert set(serialize._CODECS) == set(BY_ID)
    assert set(serialize._BY_ID) == set(BY_ID)
    assert set(serialize._COMBINED_PARTS) <= CODE_IDS  # CombinedCode's sub-ids


def test_every_table_id_is_loaded_by_its_own_strategy() -> None:
    """deserialize knows each id: a bad body is that strategy's failure, not an unknown id."""
    for strategy in STRATEGIES:
        with pytest.raises(serialize.DeserializationError) as caught:
            serialize.deserialize(strategy.identifier + "\x00not a body")
        assert strategy.name in str(caught.value)
    with pytest.raises(serialize.DeserializationError, match="unknown serialization strategy"):
        serialize.deserialize("zz\nbody")


def sub_ids(name: str, text: str) -> list[str]:
    """The ids inside a combined item's body: CombinedCode's ":"-joined, or a pack's items."""
    body = text[HEADER_LENGTH:]
    if name == "CombinedCode":  # id:body:id:body..., where a source body holds ":" too
        return COMBINED_SUB_ID.findall(body)
    if name in ("AllCodeStrategies", "AllDataStrategies"):
        return [item[:HEADER_LENGTH] for item in unpack_buffers(body)]
    return []


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_every_id_serialize_writes_is_in_the_table(name: str) -> None:
    """Whatever a strategy dumps is headed (and its parts headed) by ids of the table."""
    value: Any = add if BY_NAME[name].for_code else {"x": [1, 2.5, "three"]}
    try:
        text = serialize.serialize_result(value, [f"pkg.{name}"])
    except serialize.SerializationError:
        assert name == "PickleCode"  # deserialize-only: nothing to check
        return
    assert text[:HEADER_LENGTH] == BY_NAME[name].identifier
    parts = sub_ids(name, text)
    assert set(parts) <= set(BY_ID), parts
    assert parts or name not in ("CombinedCode", "AllCodeStrategies", "AllDataStrategies")
    loaded = serialize.deserialize(text)
    if callable(value):
        assert loaded(1, 2) == 3
    else:
        assert loaded == value


def test_the_defaults_write_table_ids() -> None:
    assert serialize.serialize_code(add)[:HEADER_LENGTH] in CODE_IDS
    assert serialize.serialize_data([1])[:HEADER_LENGTH] in DATA_IDS
    for item in unpack_buffers(serialize.pack_payload((1,), {"k": 2})):
        assert item[:HEADER_LENGTH] in DATA_IDS
    (code,) = unpack_buffers(serialize.pack_function(add))
    assert code[:HEADER_LENGTH] in CODE_IDS
