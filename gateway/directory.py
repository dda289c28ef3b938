"""What the daemon can tell a client about endpoints and functions (the SDK's lookups).

The Globus Compute SDK's Client asks the web service for an endpoint's
status, its metadata, the list of endpoints and a function's record. An
fxgate client holds no Globus credentials, so the daemon asks with its own
(through the Globus upstream, which owns the web client) and hands the
service's JSON back unchanged. The local endpoint has no service behind it:
it answers what the local upstream can truthfully say, in the same shapes.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from gateway import __version__
from gateway.errors import NotFound
from gateway.store.records import FunctionRecord

JSON = Any


@runtime_checkable
class ServiceDirectory(Protocol):
    """The web-service lookups an upstream backed by a service offers (the Globus one)."""

    def endpoint_status(self, endpoint_id: str) -> JSON:
        """GET /v2/endpoints/{id}/status, as the service answers it."""
        ...

    def endpoint_metadata(self, endpoint_id: str) -> JSON:
        """GET /v2/endpoints/{id}, as the service answers it."""
        ...

    def endpoints(self, role: str) -> JSON:
        """GET /v2/endpoints[?role=], as the service answers it."""
        ...

    def function_record(self, function_id: str) -> JSON:
        """GET /v2/functions/{id}, as the service answers it."""
        ...


@runtime_checkable
class LocalLoad(Protocol):
    """What the local upstream reports of its workers (LocalUpstream.load)."""

    def load(self) -> dict[str, int]: ...


def local_status(upstream: object) -> JSON:
    """The local endpoint's status in the service's shape: online, with its worker counts."""
    details = upstream.load() if isinstance(upstream, LocalLoad) else {}
    return {"status": "online", "details": details}


def local_metadata(endpoint_id: str, workers: int) -> JSON:
    """The local endpoint's metadata in the service's shape, naming it local."""
    return {
        "uuid": endpoint_id,
        "name": "local",
        "display_name": "fxgate local endpoint",
        "description": f"worker processes of the fxgate daemon on this machine ({workers})",
        "multi_user": False,
        "public": False,
        "hostname": socket.gethostname(),
        "endpoint_version": f"fxgate-{__version__}",
        "sdk_version": f"fxgate-{__version__}",
        "local": True,
    }


def cluster_metadata(endpoint_id: str, name: str) -> JSON:
    """A cluster endpoint's metadata in the service's shape."""
    return {
        "uuid": endpoint_id,
        "name": name,
        "display_name": f"fxgate cluster endpoint {name}",
        "description": "Globus Compute's engine driven by the fxgate daemon",
        "multi_user": False,
        "public": False,
        "hostname": socket.gethostname(),
        "endpoint_version": f"fxgate-{__version__}",
        "sdk_version": f"fxgate-{__version__}",
        "local": True,
    }


def cluster_listing(endpoint_id: str, name: str) -> JSON:
    """A cluster endpoint as an entry of GET /v2/endpoints."""
    return {"uuid": endpoint_id, "name": name, "display_name": f"fxgate cluster endpoint {name}"}


def local_listing(endpoint_id: str) -> JSON:
    """The local endpoint as an entry of GET /v2/endpoints."""
    return {"uuid": endpoint_id, "name": "local", "display_name": "fxgate local endpoint"}


def function_record(
    function_id: str, lookup: Callable[[str], FunctionRecord], service: ServiceDirectory | None
) -> JSON:
    """An fxgate function's record in the service's shape; else the service's own record."""
    try:
        name, code, description, meta = lookup(function_id)
    except KeyError:
        if service is None:
            raise NotFound(f"unknown function id {function_id}") from None
        return service.function_record(function_id)
    return {
        "function_uuid": function_id,
        "function_name": name,
        "function_code": code,
        "description": description or None,
        "metadata": json.loads(meta) if meta else {},
    }
