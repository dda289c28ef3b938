"""The daemon's status document: one shape for the Status call, the status socket and the CLI."""

from __future__ import annotations

from typing import Any

from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract.states import TaskState


def status_document(r: pb.StatusResponse) -> dict[str, Any]:
    """Plain data (what `Client.status()` returns and `fxgate status --json` prints)."""
    return {
        "version": r.version,
        "uptime_s": r.uptime_s,
        "task_groups": r.task_groups,
        "tasks": {TaskState(c.state).name: c.count for c in r.tasks},
        "upstreams": list(r.upstreams),
        "quarantined_messages": r.quarantined_messages,
        "local_endpoint_id": r.local_endpoint_id,
        "max_payload_bytes": r.max_payload_bytes,
        "upstream_status": dict(r.upstream_status),
        "watchers": r.watchers,
    }
