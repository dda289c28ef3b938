"""The framing of packed Globus Compute buffers: ``<length>\\n<item>`` repeated.

Clients pack a function's code and a task's arguments with it, workers
unpack them, and the daemon checks their shape on Submit without loading
anything in them. One parser for all three, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence

from fxgate_contract.errors import SerializationError
from fxgate_contract.strategies import HEADER_LENGTH

# A length has at most this many digits (10 GB, far above any message).
MAX_LENGTH_DIGITS = 10


def pack_buffers(items: Sequence[str]) -> str:
    """Join serialized items as ``<length>\\n<item>``..., the framing every payload uses.

    The length counts code points (Python ``len``), not bytes, exactly as the SDK does.
    """
    return "".join(f"{len(item)}\n{item}" for item in items)


def _items(packed: str) -> Iterator[str]:
    """Each item of a packed string in turn; SerializationError at the first malformed one.

    A length is ASCII digits only: str.isdigit() also accepts digits of other
    scripts ("²", "٣") that int() then refuses.
    """
    pos = 0
    while pos < len(packed):
        newline = packed.find("\n", pos, pos + MAX_LENGTH_DIGITS + 1)
        if newline < 0:
            raise SerializationError(
                f"malformed pack at offset {pos}: no newline after length"
                f" (within {MAX_LENGTH_DIGITS + 1} characters)"
            )
        digits = packed[pos:newline]
        if not (digits.isascii() and digits.isdigit()):
            raise SerializationError(
                f"malformed pack at offset {pos}: length {digits[:20]!r} is not a decimal number"
            )
        start = newline + 1
        end = start + int(digits)
        if end > len(packed):
            raise SerializationError(
                f"truncated pack: item at offset {pos} declares {int(digits)} characters,"
                f" only {len(packed) - start} remain"
            )
        yield packed[start:end]
        pos = end


def unpack_buffers(packed: str) -> list[str]:
    """Split a :func:`pack_buffers` string back into its items, rejecting malformed input."""
    return list(_items(packed))


def check_packed(packed: str, pieces: int, strategy_ids: Collection[str]) -> None:
    """That a packed string holds `pieces` items, each headed by one of `strategy_ids`.

    Nothing is deserialized: the daemon calls this on every payload it accepts.
    """
    found = 0
    for item in _items(packed):
        header = item[:HEADER_LENGTH]
        if header not in strategy_ids:
            raise SerializationError(
                f"item {found} has no known serialization strategy header ({header!r})"
            )
        found += 1
    if found != pieces:
        raise SerializationError(f"holds {found} serialized items; expected {pieces}")
