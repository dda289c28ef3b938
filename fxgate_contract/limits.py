"""Limits both sides must agree on, or one would send what the other refuses to read."""

from __future__ import annotations

# The largest gRPC message either side sends or accepts: a 10 MB payload
# (the service's own limit) plus framing fits with room.
MAX_MESSAGE = 64 * 1024 * 1024
