"""Which strategies serialize a client's function code and task data (no dill here).

The SDK lets a script choose them (``Client(code_serialization_strategy=...)``,
``Executor(serializer=ComputeSerializer(...))``). fxgate takes the same choices
-- its own :class:`Serializer`, the SDK's ComputeSerializer, strategy classes,
instances or import paths -- by the strategy's class name, and refuses at the
call one it cannot honour rather than silently sending DillCode.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fxgate_contract.errors import InvalidStrategy
from fxgate_contract.strategies import BY_NAME, Strategy

# Strategies the SDK keeps only to read old data: it refuses to serialize with them.
_READ_ONLY = frozenset({"PickleCode"})


@dataclass(frozen=True, slots=True)
class Serializer:
    """A code strategy and a data strategy, as the SDK's ComputeSerializer holds them, and
    the names of the strategies results may be read with (empty: any), as its allowlist."""

    strategy_code: Strategy = BY_NAME["DillCode"]
    strategy_data: Strategy = BY_NAME["DillDataBase64"]
    allowed: frozenset[str] = frozenset()


DEFAULT = Serializer()


def strategy_of(value: Any, *, for_code: bool) -> Strategy:
    """A strategy named by an fxgate Strategy, an SDK strategy class or instance, or a path."""
    found = _known(value)
    if found.name in _READ_ONLY:
        raise InvalidStrategy(f"{found.name} can no longer serialize (the SDK refuses it too).")
    if found.for_code != for_code:
        wanted, got = ("code", "data") if for_code else ("data", "code")
        raise InvalidStrategy(
            f"{found.name} is a {got} serialization strategy, expected a {wanted} strategy."
        )
    return found


def _known(value: Any) -> Strategy:
    """The strategy a value names (an fxgate Strategy, an SDK class or instance, or a path)."""
    if isinstance(value, Strategy):
        name = value.name
    elif isinstance(value, str):
        name = value.rpartition(".")[2]
    elif isinstance(value, type):
        name = value.__name__
    else:
        name = type(value).__name__
    found = BY_NAME.get(name)
    if found is None:
        raise InvalidStrategy(f"{name} is not a known serialization strategy.")
    return found


def serializer_of(value: Any) -> Serializer:
    """An fxgate Serializer from one, or from the SDK's ComputeSerializer; None: the default."""
    if value is None:
        return DEFAULT
    if isinstance(value, Serializer):
        return value
    code = getattr(value, "strategy_code", None) or getattr(value, "code_serializer", None)
    data = getattr(value, "strategy_data", None) or getattr(value, "data_serializer", None)
    if code is None or data is None:
        raise TypeError(f"Expected ComputeSerializer, got {type(value).__name__}")
    # The SDK's allowlist of strategy classes that may deserialize (results, here).
    allowed = getattr(value, "allowed_deserializer_types", None) or ()
    return Serializer(
        strategy_of(code, for_code=True),
        strategy_of(data, for_code=False),
        frozenset(_known(t).name for t in allowed),
    )


def serializer_from(code: Any = None, data: Any = None) -> Serializer:
    """The Serializer of a Client's code_/data_serialization_strategy (None: the default)."""
    return Serializer(
        DEFAULT.strategy_code if code is None else strategy_of(code, for_code=True),
        DEFAULT.strategy_data if data is None else strategy_of(data, for_code=False),
    )


def result_serializer_paths(values: Iterable[Any] | None) -> tuple[str, ...]:
    """Import paths of result serializers given as paths, strategy classes or instances.

    A class or instance becomes "<module>.<class name>", the path the SDK sends for it.
    Each must name a strategy the SDK knows (InvalidStrategy, a SerdeError, at once, as
    the SDK's setter raises), not fail later on the endpoint.
    """
    paths = []
    for value in values or ():
        _known(value)
        if isinstance(value, str):
            paths.append(value)
        else:
            cls = value if isinstance(value, type) else type(value)
            paths.append(f"{cls.__module__}.{cls.__name__}")
    return tuple(paths)
