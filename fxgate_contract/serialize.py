"""The Globus Compute serialization format, written against the standard library and dill.

Why not import ``globus_compute_sdk.serialize``: the client library is installed into many
small user environments and into the daemon, and the SDK drags in globus-sdk, pika,
pydantic and its own pins just to produce a few strings. The format itself is small and
stable (spec ``docs/globus-compute-wire.md`` section 4): a serialized item is a 3-character
strategy id (two characters and ``"\\n"``) followed by a body, and several items are
joined by :func:`pack_buffers`. Bytes made here are what a real endpoint and the real SDK
load, and vice versa; ``tests/test_serialize_sdk_compat.py`` checks that against the SDK.

Deserializing runs pickle/dill or ``exec`` on the input, so only feed it trusted data.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dill
import dill.source

from fxgate_contract.errors import DeserializationError, SerdeError, SerializationError
from fxgate_contract.framing import pack_buffers, unpack_buffers
from fxgate_contract.strategies import BY_ID, HEADER_LENGTH, Strategy

__all__ = [
    "DeserializationError",
    "SerializationError",
    "deserialize",
    "pack_buffers",
    "pack_function",
    "pack_payload",
    "serialize",
    "serialize_code",
    "serialize_data",
    "serialize_result",
    "serialize_with",
    "unpack_buffers",
]

DEFAULT_RESULT_SERIALIZERS = ("DillDataBase64", "DillCode")


# -- strategy bodies ---------------------------------------------------------------------


_PLAIN_SCALARS = (int, float, str, bytes, bool, type(None))
_PLAIN_LIMIT = 10_000


def _is_plain(obj: Any, budget: list[int]) -> bool:
    """True for builtin scalars in builtin containers, small enough to check quickly.

    For such values dill's pickler adds nothing to pickle's (same protocol,
    same bytes), and pickle is about thirty times faster.
    """
    budget[0] -= 1
    if budget[0] < 0:
        return False
    kind = type(obj)
    if kind in _PLAIN_SCALARS:
        return True
    if kind in (tuple, list, set, frozenset):
        return all(_is_plain(x, budget) for x in obj)
    if kind is dict:
        return all(_is_plain(k, budget) and _is_plain(v, budget) for k, v in obj.items())
    return False


# Bytes that fit one MIME base64 line (76 characters): one C call encodes them.
_ONE_LINE = 57


def _dump_dill(obj: Any) -> str:
    if _is_plain(obj, [_PLAIN_LIMIT]):
        raw = pickle.dumps(obj, protocol=dill.settings["protocol"])
    else:
        raw = dill.dumps(obj)
    # MIME base64: 76-character lines, each ending in "\n", as the SDK writes it
    if 0 < len(raw) <= _ONE_LINE:
        return binascii.b2a_base64(raw).decode("ascii")
    return base64.encodebytes(raw).decode("ascii")


def _load_dill(body: str) -> Any:
    raw = binascii.a2b_base64(body)
    # dill's unpickler differs only for globals of these modules; a pickle naming
    # none of them loads the same with the standard library's, ten times faster.
    if b"dill" in raw or b"__builtin__" in raw or b"__main__" in raw:
        return dill.loads(raw)
    return pickle.loads(raw)


def _load_pickle(body: str) -> Any:
    return pickle.loads(binascii.a2b_base64(body))


def _refuse_pickle(fn: Any) -> str:
    raise SerializationError("PickleCode is deserialize-only (the SDK dropped it)")


def _exec_source(name: str, source: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    if name not in namespace:
        raise DeserializationError(f"source does not define {name!r}")
    return namespace[name]


def _load_named_source(body: str) -> Any:
    name, sep, source = body.partition(":")
    if not sep:
        raise DeserializationError("source payload has no 'name:' prefix")
    return _exec_source(name, source)


def _load_pickled_source(body: str) -> Any:
    name, source = _load_dill(body)
    return _exec_source(name, source)


def _inspect_source(fn: Any) -> str:
    return f"{fn.__name__}:{inspect.getsource(fn)}"


def _dill_source(fn: Any) -> str:
    return f"{fn.__name__}:{dill.source.getsource(fn, lstrip=True)}"


def _dump_inspect_pickled(fn: Any) -> str:
    return _dump_dill((fn.__name__, inspect.getsource(fn)))


def _dump_dill_pickled(fn: Any) -> str:
    return _dump_dill((fn.__name__, dill.source.getsource(fn, lstrip=True)))


_COMBINED_PARTS = ("04\n", "01\n", "03\n", "sd\n", "st\n")


def _dump_combined(fn: Any) -> str:
    # CombinedCode ("10"): id and body of each working sub-strategy, all joined by ":"
    chunks: list[str] = []
    for identifier in _COMBINED_PARTS:
        try:
            chunks += [identifier, _BY_ID[identifier].dump(fn)]
        except Exception:
            continue
    if not chunks:
        raise SerializationError("no CombinedCode sub-strategy could serialize the function")
    return ":".join(chunks)


def _load_combined(body: str) -> Any:
    # Like the SDK, split on every ":"; only sub-bodies without ":" (base64) pair up reliably.
    parts = body.split(":")
    errors: list[str] = []
    for identifier, sub_body in zip(parts[::2], parts[1::2], strict=False):
        if identifier not in _COMBINED_PARTS:
            errors.append(f"unusable sub-id {identifier!r}")
            continue
        try:
            return deserialize(identifier + sub_body)
        except DeserializationError as e:
            errors.append(str(e))
    raise DeserializationError("no CombinedCode part could be loaded: " + "; ".join(errors))


def _combo_dumper(identifiers: Sequence[str]) -> Callable[[Any], str]:
    # AllCodeStrategies / AllDataStrategies: a pack of every sub-serialization that works
    def dump(obj: Any) -> str:
        items: list[str] = []
        errors: list[str] = []
        for identifier in identifiers:
            strategy = _BY_ID[identifier]
            try:
                items.append(identifier + strategy.dump(obj))
            except Exception as e:
                errors.append(f"{strategy.name}: {type(e).__name__}: {e}")
        if not items:
            raise SerializationError("no sub-strategy worked: " + "; ".join(errors))
        return pack_buffers(items)

    return dump


_dump_all_code = _combo_dumper(["st\n", "sd\n", "01\n"])
_dump_all_data = _combo_dumper(["11\n", "00\n"])


def _load_combo(body: str) -> Any:
    errors: list[str] = []
    for item in unpack_buffers(body):
        try:
            return deserialize(item)
        except DeserializationError as e:
            errors.append(str(e))
    raise DeserializationError("no packed sub-payload could be loaded: " + "; ".join(errors))


@dataclass(frozen=True)
class _Codec:
    """How one strategy (fxgate_contract.strategies) loads and dumps its body."""

    name: str  # the SDK class name, as used in result_serializers import paths
    identifier: str
    for_code: bool
    load: Callable[[str], Any]  # body (after the id) -> object
    dump: Callable[[Any], str]  # object -> body


_CODECS: dict[str, tuple[Callable[[str], Any], Callable[[Any], str]]] = {
    "00\n": (_load_dill, _dump_dill),
    "01\n": (_load_dill, _dump_dill),
    "02\n": (_load_pickle, _refuse_pickle),
    "03\n": (_load_pickled_source, _dump_inspect_pickled),
    "04\n": (_load_pickled_source, _dump_dill_pickled),
    "10\n": (_load_combined, _dump_combined),
    "11\n": (json.loads, json.dumps),
    "12\n": (_load_combo, _dump_all_code),
    "13\n": (_load_combo, _dump_all_data),
    "st\n": (_load_named_source, _inspect_source),
    "sd\n": (_load_named_source, _dill_source),
}
_BY_ID = {i: _Codec(s.name, i, s.for_code, *_CODECS[i]) for i, s in BY_ID.items()}
_BY_NAME = {c.name: c for c in _BY_ID.values()}


# -- public API --------------------------------------------------------------------------


def serialize_code(fn: Callable[..., Any]) -> str:
    """Serialize a callable with DillCode ("01"), the SDK's default for functions."""
    if not callable(fn):
        raise TypeError(f"serialize_code needs a callable, got {type(fn).__name__}")
    try:
        return "01\n" + _dump_dill(fn)
    except Exception as e:
        raise SerializationError(f"DillCode could not serialize {fn!r}: {e}") from e


def serialize_data(obj: Any) -> str:
    """Serialize a value with DillDataBase64 ("00"), the SDK's default for data."""
    try:
        return "00\n" + _dump_dill(obj)
    except Exception as e:
        raise SerializationError(
            f"DillDataBase64 could not serialize a {type(obj).__name__}: {e}"
        ) from e


def serialize(obj: Any) -> str:
    """Serialize like ``ComputeSerializer().serialize``: code iff ``callable(obj)``."""
    return serialize_code(obj) if callable(obj) else serialize_data(obj)


def deserialize(text: str, allowed: frozenset[str] = frozenset()) -> Any:
    """Load any item the SDK or an endpoint may produce, chosen by its 3-character id.

    `allowed`: names of the strategies that may load it (empty: any), as the SDK's
    ComputeSerializer(allowed_deserializer_types=...) restricts its results."""
    header = text[:HEADER_LENGTH]
    strategy = _BY_ID.get(header)
    if strategy is None:
        raise DeserializationError(f"unknown serialization strategy id {header!r}")
    if allowed and strategy.name not in allowed:
        kind = "Code" if strategy.for_code else "Data"
        raise DeserializationError(
            f"{kind} serializer {strategy.name} disabled by current configuration; "
            f"allowed serializers: {', '.join(sorted(allowed))}"
        )
    try:
        return strategy.load(text[HEADER_LENGTH:])
    except Exception as e:
        reason = str(e) if isinstance(e, SerdeError) else f"{type(e).__name__}: {e}"
        raise DeserializationError(f"{strategy.name} payload could not be loaded: {reason}") from e


def serialize_with(obj: Any, strategy: Strategy) -> str:
    """Serialize with one chosen strategy (fxgate_contract.serializer), as the SDK would."""
    codec = _BY_ID[strategy.identifier]
    try:
        return codec.identifier + codec.dump(obj)
    except Exception as e:
        kind = "Code" if strategy.for_code else "Data"
        raise SerializationError(f"{kind} serialization strategy {codec.name} failed: {e}") from e


def pack_function(fn: Callable[..., Any], strategy: Strategy | None = None) -> str:
    """Build the ``function_code`` of a function registration: a pack of one code item.

    DillCode unless another code strategy is given.
    """
    if strategy is None or strategy.identifier == "01\n":
        return pack_buffers([serialize_code(fn)])
    if not callable(fn):
        raise TypeError(f"serialize_code needs a callable, got {type(fn).__name__}")
    return pack_buffers([serialize_with(fn, strategy)])


def pack_payload(
    args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], strategy: Strategy | None = None
) -> str:
    """Build one task payload (a pack of args then kwargs), checking types as the SDK does.

    DillDataBase64 unless another data strategy is given.
    """
    if not isinstance(args, list | tuple):
        raise TypeError(f"args: expected tuple or list, got {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise TypeError(f"kwargs: expected dict, got {type(kwargs).__name__}")
    bad_keys = [k for k in kwargs if not isinstance(k, str)]
    if bad_keys:
        raise TypeError(f"kwargs: keys must be str, got {type(bad_keys[0]).__name__}")
    if strategy is None or strategy.identifier == "00\n":
        return pack_buffers([serialize_data(args), serialize_data(kwargs)])
    return pack_buffers([serialize_with(args, strategy), serialize_with(kwargs, strategy)])


def serialize_result(value: Any, result_serializers: Sequence[str] = ()) -> str:
    """Serialize a task's return value the way an endpoint does.

    Tries each requested strategy (import paths such as
    ``"globus_compute_sdk.serialize.JSONData"``, matched by class name) in order and
    returns the first that is of the right kind (code iff ``callable(value)``) and works;
    with no list, DillDataBase64 then DillCode.
    """
    names = [path.rpartition(".")[2] for path in result_serializers] or DEFAULT_RESULT_SERIALIZERS
    wants_code = callable(value)
    failures: list[str] = []
    for name in names:
        strategy = _BY_NAME.get(name)
        if strategy is None:
            failures.append(f"{name}: not a known serialization strategy")
        elif strategy.for_code != wants_code:
            kind = "code" if strategy.for_code else "data"
            failures.append(f"{name}: is a {kind} strategy")
        else:
            try:
                return strategy.identifier + strategy.dump(value)
            except Exception as e:
                failures.append(f"{name}: {type(e).__name__}: {e}")
    raise SerializationError(
        f"no result serializer could handle a {type(value).__name__}: " + "; ".join(failures)
    )
