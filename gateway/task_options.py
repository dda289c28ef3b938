"""Task options checked at Submit, and a function's registration extras checked at
RegisterFunction: what any endpoint may be sent, and what the local one can do.

The daemon forwards options as the JSON text the client gave; it only checks
that each is a JSON object of bounded size, so a bad one is refused at Submit
(INVALID_ARGUMENT) and never reaches an upstream. The local endpoint has no
endpoint config template and runs MPI tasks with a fixed set of resource keys,
so it refuses, at Submit too, what it could not honour.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import InvalidRequest
from gateway.store.records import TaskOptions

# Characters of each option's JSON text, at most: far above a real config, far
# below what every stored task referring to it should make the store hold.
MAX_OPTION_CHARS = 64 * 1024
# The resource_specification keys the local endpoint understands (MPIFunction's).
LOCAL_RESOURCE_KEYS = frozenset({"num_nodes", "ranks_per_node", "num_ranks", "launcher_options"})


def _object(text: str, what: str) -> dict[str, Any]:
    """The JSON object a non-empty option holds; InvalidRequest otherwise."""
    if len(text) > MAX_OPTION_CHARS:
        raise InvalidRequest(
            f"{what} is {len(text)} characters of JSON; at most {MAX_OPTION_CHARS} are allowed"
        )
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def check_options(options: TaskOptions) -> None:
    """Each option given is a JSON object of bounded size."""
    for text, what in (
        (options.user_endpoint_config, "user_endpoint_config"),
        (options.resource_specification, "resource_specification"),
        (options.user_runtime, "user_runtime"),
    ):
        if text:
            _object(text, what)


def check_local_options(options: TaskOptions) -> None:
    """What the local endpoint cannot honour: any user_endpoint_config, unknown resource keys."""
    if options.user_endpoint_config:
        raise InvalidRequest(
            "the local endpoint has no endpoint config template: user_endpoint_config "
            "cannot be used with it (leave it unset, or send the tasks to a Globus endpoint)"
        )
    if options.resource_specification:
        spec = _object(options.resource_specification, "resource_specification")
        unknown = sorted(set(spec) - LOCAL_RESOURCE_KEYS)
        if unknown:
            raise InvalidRequest(
                f"the local endpoint does not understand resource_specification "
                f"key(s) {', '.join(unknown)}; it takes {', '.join(sorted(LOCAL_RESOURCE_KEYS))}"
            )


def check_cluster_options(options: TaskOptions, name: str) -> None:
    """A cluster endpoint runs one engine config: no user_endpoint_config template to fill.
    Its engine checks resource_specification itself, and fails a task it cannot honour."""
    if options.user_endpoint_config:
        raise InvalidRequest(
            f"the cluster endpoint {name!r} runs the engine of fxgate's config and has no "
            "endpoint config template: user_endpoint_config cannot be used with it"
        )


def check_registration(description: str, meta: str) -> None:
    """A function's description is bounded text; its metadata, when sent, a JSON object of
    string values (the SDK's FunctionRegistrationMetadata), both forwarded as they are."""
    if len(description) > MAX_OPTION_CHARS:
        raise InvalidRequest(
            f"description is {len(description)} characters; at most {MAX_OPTION_CHARS} are allowed"
        )
    if meta:
        bad = [k for k, v in _object(meta, "metadata").items() if not isinstance(v, str)]
        if bad:
            raise InvalidRequest(f"metadata values must be strings; {', '.join(bad)} is not")
