"""The messages between the daemon and its engine child: JSON behind a 4-byte length.

Both sides import this module and nothing else of each other's. JSON, never
pickle: the daemon reads what the child writes without unpickling anything,
and a Result the engine packed travels as base64 text, byte for byte.

daemon -> child:
  {"t": "start", "engine": {...}, "endpoint_id": UUID, "run_dir": path}  (first message)
  {"t": "tasks", "tasks": [[task_id, function_id, code, payload, resource_spec, serializers]]}
     code is "" once this child was sent the function's code; resource_spec is JSON text or "".
child -> daemon:
  {"t": "ready"}                      the engine started
  {"t": "failed", "error": text}      the engine could not be built or started
  {"t": "results", "results": [[task_id, base64 Result]]}
  {"t": "status", ...}                blocks, workers, queue depth (engine_child.status)
"""

from __future__ import annotations

import json
import struct
from typing import Any

HEADER = struct.Struct("!I")
# A result is at most 10 MiB of data (the engine's limit) plus base64 and its envelope.
MAX_MESSAGE = 64 * 1024 * 1024


def encode(message: Any) -> bytes:
    """One framed message."""
    body = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


class WireError(Exception):
    """The other side wrote something that is not a message of this protocol."""


def take(buf: bytearray) -> list[Any]:
    """Every whole message at the front of buf, removed from it; a partial one stays."""
    out: list[Any] = []
    pos = 0
    while len(buf) - pos >= HEADER.size:
        (size,) = HEADER.unpack_from(buf, pos)
        if size > MAX_MESSAGE:
            raise WireError(f"a message of {size} bytes is over the {MAX_MESSAGE}-byte limit")
        end = pos + HEADER.size + size
        if len(buf) < end:
            break
        try:
            out.append(json.loads(buf[pos + HEADER.size : end]))
        except ValueError as exc:
            raise WireError(f"not JSON: {exc}") from None
        pos = end
    del buf[:pos]
    return out
