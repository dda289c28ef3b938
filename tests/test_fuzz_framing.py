"""Malformed packed buffers are refused as the client's mistake: INVALID_ARGUMENT, every time.

A function's code and a task's payload are ``<length>\\n<item>`` packs
(fxgate_contract/framing.py) that the daemon checks without loading. Each
strategy below breaks a valid pack in one known way (a length that is not a
plain decimal number, too large, too long; a cut; a missing newline; the
wrong number of items; an unknown strategy header), so every example is
malformed by construction. A real daemon must answer each with
INVALID_ARGUMENT naming the field, never INTERNAL or anything else, accept
nothing, and still serve afterwards; the parser itself must raise
SerializationError and nothing else.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client import Executor
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from fxgate_contract.errors import SerializationError
from fxgate_contract.framing import MAX_LENGTH_DIGITS, check_packed, pack_buffers, unpack_buffers
from fxgate_contract.serialize import pack_function, pack_payload
from fxgate_contract.strategies import CODE_IDS, DATA_IDS
from tests.daemon import DaemonProcess

CODE_PIECES, PAYLOAD_PIECES = 1, 2
RPC_FUZZ = settings(
    max_examples=120,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
UNIT_FUZZ = settings(max_examples=600, database=None, deadline=None)

# Item bodies: any text a protobuf string can carry (no lone surrogates), short enough
# that a pack is under 200 characters (see missing_newline).
bodies = st.text(st.characters(blacklist_categories=("Cs",)), max_size=50)
# Digits that str.isdigit() accepts and int() or an ASCII check must not.
OTHER_DIGITS = ["²", "٣", "߂", "𝟗", "①", "০", "٠", "९"]


@dataclass(frozen=True)
class Malformed:
    kind: str
    packed: str
    framing: bool  # the framing itself is broken (unpack_buffers must refuse it too)


def items(ids: Collection[str], count: int) -> st.SearchStrategy[list[str]]:
    """count valid items, each a known strategy header and a body."""
    item = st.tuples(st.sampled_from(sorted(ids)), bodies).map("".join)
    return st.lists(item, min_size=count, max_size=count)


def bad_lengths(remaining: int) -> st.SearchStrategy[str]:
    """A length text that must be refused for an item with `remaining` characters after it."""
    mixed = st.lists(st.sampled_from([*OTHER_DIGITS, "1", "0", "9"]), min_size=1, max_size=10)
    return st.one_of(
        mixed.map("".join).filter(lambda s: not s.isascii()),  # "²", "1٣", ...
        st.integers(1, 10**9).map(lambda n: f"-{n}"),  # negative
        st.sampled_from(["", "+5", " 5", "5 ", "0x1", "1_0", "1.0", "1e3", "٣", "²"]),
        st.integers(remaining + 1, 10**MAX_LENGTH_DIGITS - 1).map(str),  # more than is left
        st.integers(10**MAX_LENGTH_DIGITS, 10**30).map(str),  # 11 digits or more
        st.integers(0, 9).map(lambda n: str(n).zfill(MAX_LENGTH_DIGITS + 1)),  # zero-padded
    )


@st.composite
def bad_length(draw: st.DrawFn, pieces: int, ids: Collection[str]) -> Malformed:
    parts = draw(items(ids, pieces))
    at = draw(st.integers(0, pieces - 1))
    before, after = pack_buffers(parts[:at]), pack_buffers(parts[at + 1 :])
    remaining = len(parts[at]) + len(after)
    length = draw(bad_lengths(remaining))
    return Malformed("length", f"{before}{length}\n{parts[at]}{after}", True)


@st.composite
def truncated(draw: st.DrawFn, pieces: int, ids: Collection[str]) -> Malformed:
    packed = pack_buffers(draw(items(ids, pieces)))
    cut = draw(st.integers(0, len(packed) - 1))
    return Malformed("truncated", packed[:cut], False)  # may end on an item boundary


@st.composite
def missing_newline(draw: st.DrawFn, pieces: int, ids: Collection[str]) -> Malformed:
    """One item's newline dropped, or a bare length at the end.

    Dropped: its length runs into the header, "12" + "00\\n" reads as 1200, far over
    what a pack of 3 items of at most 53 characters holds; "st\\n" is no digit at all.
    """
    parts = draw(items(ids, pieces))
    if draw(st.booleans()):
        return Malformed(
            "no newline", pack_buffers(parts) + draw(st.integers(0, 999).map(str)), True
        )
    at = draw(st.integers(0, pieces - 1))
    joined = (
        pack_buffers(parts[:at]) + f"{len(parts[at])}{parts[at]}" + pack_buffers(parts[at + 1 :])
    )
    return Malformed("no newline", joined, True)


@st.composite
def wrong_count(draw: st.DrawFn, pieces: int, ids: Collection[str]) -> Malformed:
    count = draw(st.integers(0, 4).filter(lambda n: n != pieces))
    return Malformed("count", pack_buffers(draw(items(ids, count))), False)


@st.composite
def unknown_header(draw: st.DrawFn, pieces: int, ids: Collection[str]) -> Malformed:
    """One item headed by a strategy id of the wrong kind, an unknown one, or none."""
    parts = draw(items(ids, pieces))
    at = draw(st.integers(0, pieces - 1))
    other_kind = sorted((CODE_IDS | DATA_IDS) - set(ids))
    header = draw(
        st.sampled_from(other_kind)
        | st.sampled_from(["zz\n", "0\n", "00", "01 ", "\n00", "000"])
        | st.text(max_size=4)
    )
    item = header + draw(bodies)
    if item[:3] in ids:  # made a known header by chance: make it unknown again
        item = "??\n" + item
    parts[at] = item
    return Malformed("header", pack_buffers(parts), False)


def malformed(pieces: int, ids: Collection[str]) -> st.SearchStrategy[Malformed]:
    return st.one_of(
        bad_length(pieces, ids),
        truncated(pieces, ids),
        missing_newline(pieces, ids),
        wrong_count(pieces, ids),
        unknown_header(pieces, ids),
    )


# ------------------------------------------------------------------ the parser itself


@UNIT_FUZZ
@given(
    st.sampled_from([(CODE_PIECES, CODE_IDS), (PAYLOAD_PIECES, DATA_IDS)]).flatmap(
        lambda shape: malformed(*shape).map(lambda m: (shape, m))
    )
)
def test_the_parser_refuses_every_malformed_pack(
    case: tuple[tuple[int, frozenset[str]], Malformed],
) -> None:
    (pieces, ids), bad = case
    with pytest.raises(SerializationError):
        check_packed(bad.packed, pieces, ids)
    try:
        found = unpack_buffers(bad.packed)
    except SerializationError:
        return
    assert not bad.framing, f"{bad.kind}: {bad.packed!r} unpacked as {found!r}"
    # Well framed: then what is wrong is its item count or an item's header.
    assert len(found) != pieces or any(item[:3] not in ids for item in found)


@UNIT_FUZZ
@given(st.integers(0, 4).flatmap(lambda n: items(CODE_IDS | DATA_IDS, n)))
def test_the_parser_reads_back_every_valid_pack(parts: list[str]) -> None:
    packed = pack_buffers(parts)
    assert unpack_buffers(packed) == parts
    check_packed(packed, len(parts), CODE_IDS | DATA_IDS)


@pytest.mark.parametrize("pieces", [CODE_PIECES, PAYLOAD_PIECES])
def test_the_strategies_make_malformed_packs_of_each_kind(pieces: int) -> None:
    """A guard on the generator: each kind is reachable (hypothesis would not say)."""
    ids = CODE_IDS if pieces == CODE_PIECES else DATA_IDS
    kinds: set[str] = set()

    @settings(max_examples=200, database=None, deadline=None)
    @given(malformed(pieces, ids))
    def collect(bad: Malformed) -> None:
        kinds.add(bad.kind)

    collect()
    assert kinds == {"length", "truncated", "no newline", "count", "header"}


# ------------------------------------------------------------------- a real daemon


def double(x: int) -> int:
    return 2 * x


class Target:
    """The module's daemon, a stub, a registered function and a group no refusal may create."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        self.channel = grpc.insecure_channel(daemon.address)
        self.stub = pb_grpc.GatewayStub(self.channel)  # type: ignore[no-untyped-call]
        request = pb.RegisterFunctionRequest(
            function_name="double", function_code=pack_function(double)
        )
        self.function_id = self.stub.RegisterFunction(request, timeout=30).function_id
        self.group_id = str(uuid.uuid4())


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    d = DaemonProcess(tmp_path_factory.mktemp("framing") / "state", workers=1)
    d.start()
    t = Target(d)
    yield t
    t.channel.close()
    assert d.stop() == 0, d.log()


def refused_as_invalid(call: object, field: str) -> None:
    """The call must fail with INVALID_ARGUMENT and a message that names the field."""
    assert callable(call)
    with pytest.raises(grpc.RpcError) as caught:
        call()
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{err.code()}: {err.details()}"
    assert field in (err.details() or ""), err.details()


@RPC_FUZZ
@given(bad=malformed(CODE_PIECES, CODE_IDS))
def test_register_function_refuses_malformed_code(target: Target, bad: Malformed) -> None:
    request = pb.RegisterFunctionRequest(function_name="f", function_code=bad.packed)
    refused_as_invalid(lambda: target.stub.RegisterFunction(request, timeout=30), "function_code")


@RPC_FUZZ
@given(bad=malformed(PAYLOAD_PIECES, DATA_IDS))
def test_submit_refuses_a_malformed_payload_and_accepts_nothing(
    target: Target, bad: Malformed
) -> None:
    good = pb.TaskSpec(function_id=target.function_id, payload=pack_payload((1,), {}))
    request = pb.SubmitRequest(
        task_group_id=target.group_id,
        endpoint_id="local",
        tasks=[good, pb.TaskSpec(function_id=target.function_id, payload=bad.packed)],
    )
    refused_as_invalid(lambda: target.stub.Submit(request, timeout=30), "task 1: payload")


def test_nothing_was_accepted_and_the_daemon_still_serves(target: Target) -> None:
    """Runs after the fuzzing above (file order): no task of a refused submit exists."""
    with pytest.raises(grpc.RpcError) as caught:
        target.stub.GetTaskGroup(pb.GetTaskGroupRequest(task_group_id=target.group_id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with Executor(endpoint_id="local", address=target.daemon.address) as ex:
        assert ex.submit(double, 21).result(timeout=60) == 42
    log = target.daemon.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 300 :][:3000]
