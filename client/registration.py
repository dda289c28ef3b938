"""Function registration as the SDK spells it: its options, source-code functions, and
the hardware report that get_worker_hardware_details runs.

Shared by Client and Executor, which register through the same daemon call.
A registration carries what the SDK's does to the service: the description
(by default the function's docstring) and the metadata of the process that
serialized the code (its Python, the SDK wire version, the code strategy).
The daemon registers functions with the Globus Compute service under its own
credentials, so the SDK's sharing options (public, group, ha_endpoint_id)
cannot be honoured: they are refused rather than silently dropped.
"""

from __future__ import annotations

import functools
import inspect
import json
import platform
from collections.abc import Callable
from typing import Any

from client.errors import NotOffered
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract.framing import pack_buffers
from fxgate_contract.runtime import SDK_VERSION

# Keywords register_function / register_source_code take besides the sharing ones:
# the SDK's, and funcX's function_name (which names the function).
KNOWN_OPTIONS = frozenset({"description", "metadata", "function_name"})
# Options that would change who may use the function: fxgate cannot do that.
SHARING_OPTIONS = ("public", "group", "ha_endpoint_id")
# The fields of the SDK's FunctionRegistrationMetadata (the first two required).
METADATA_FIELDS = ("python_version", "sdk_version", "serde_identifier")


def check_options(options: dict[str, Any]) -> None:
    """Refuse sharing options set to anything but their defaults, and unknown names
    (a TypeError, as the SDK's signature gives for them)."""
    for name in SHARING_OPTIONS:
        if options.get(name):
            raise NotOffered(
                f"register_function({name}=...) is not offered: the fxgate daemon registers "
                "functions with its own Globus credentials, keyed by their code, so it cannot "
                "share or restrict one for you; register it with the Globus Compute SDK and "
                "pass its id to submit_to_registered_function"
            )
    unknown = set(options) - KNOWN_OPTIONS - set(SHARING_OPTIONS)
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(unknown))}")


@functools.cache
def code_metadata(code_strategy_id: str) -> str:
    """The registration metadata of code serialized here with that strategy, as JSON text."""
    return json.dumps(
        {
            "python_version": platform.python_version(),
            "sdk_version": SDK_VERSION,
            "serde_identifier": code_strategy_id.strip(),
        }
    )


def function_request(
    fn: Callable[..., Any],
    name: str,
    code: str,
    code_strategy_id: str,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> pb.RegisterFunctionRequest:
    """The registration of a function object, as the SDK's register_function sends it."""
    if metadata:
        raise ValueError(
            "`function` specified; cannot also specify `function_code`, `function_name`, "
            "or `metadata`"
        )
    return pb.RegisterFunctionRequest(
        function_name=name,
        function_code=code,
        description=description if description is not None else inspect.getdoc(fn) or "",
        metadata_json=code_metadata(code_strategy_id),
    )


def source_request(
    source: str,
    function_name: str,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> pb.RegisterFunctionRequest:
    """The registration of source text, as the SDK's register_source_code sends it:
    the metadata given (checked as its FunctionRegistrationMetadata would), else this
    process's Python and the SDK version."""
    if metadata:
        unknown = sorted(set(metadata) - set(METADATA_FIELDS))
        missing = [f for f in METADATA_FIELDS[:2] if f not in metadata]
        if unknown or missing:
            raise TypeError(
                f"metadata takes {', '.join(METADATA_FIELDS)} ({', '.join(METADATA_FIELDS[:2])} "
                f"required); got {', '.join(sorted(metadata))}"
            )
        meta = {k: v for k, v in metadata.items() if v}
    else:
        meta = {"python_version": platform.python_version(), "sdk_version": SDK_VERSION}
    return pb.RegisterFunctionRequest(
        function_name=function_name,
        function_code=pack_source(source, function_name),
        description=description or "",
        metadata_json=json.dumps(meta),
    )


def pack_source(source: str, function_name: str) -> str:
    """function_code for source text, as the SDK builds it: the "st" strategy, "name:source"."""
    return pack_buffers([f"st\n{function_name}:{source}"])


# Registered as source (the "st" strategy), so it runs on any endpoint, fxgate installed
# there or not; the SDK sends its own run_hardware_report, which needs the SDK there.
HARDWARE_REPORT_NAME = "fxgate_hardware_report"
HARDWARE_REPORT_SOURCE = '''
def fxgate_hardware_report(env=None):
    """A few lines on the machine this runs on: host, platform, CPUs, memory, disk, Python."""
    import os
    import platform
    import shutil
    import socket

    lines = [f"== {env or 'worker'} == {socket.gethostname()} =="]
    lines.append(f"platform: {platform.platform()}")
    lines.append(f"processor: {platform.processor() or platform.machine()}")
    lines.append(f"cpus: {os.cpu_count()}")
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        lines.append(f"memory: {memory / 2**30:.1f} GiB")
    except (AttributeError, ValueError, OSError):
        pass
    disk = shutil.disk_usage(os.getcwd())
    lines.append(f"disk: {disk.free / 2**30:.1f} GiB free of {disk.total / 2**30:.1f} GiB")
    lines.append(f"python: {platform.python_version()} ({platform.python_implementation()})")
    return "\\n".join(lines)
'''
