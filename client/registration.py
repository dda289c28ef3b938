"""Function registration as the SDK spells it: its options, source-code functions, and
the hardware report that get_worker_hardware_details runs.

Shared by Client and Executor, which register through the same daemon call.
The daemon keys a function by its code and registers it with the Globus
Compute service under its own credentials, so the SDK's sharing options
(public, group, ha_endpoint_id) cannot be honoured: they are refused rather
than silently dropped.
"""

from __future__ import annotations

from typing import Any

from client.errors import NotOffered
from fxgate_contract.framing import pack_buffers

# Options of the SDK's Client.register_function / register_source_code that carry
# no meaning here and are accepted as the SDK's scripts pass them (funcX's too).
IGNORED_OPTIONS = frozenset(
    {"description", "metadata", "function_name", "container_uuid", "searchable"}
)
# Options that would change who may use the function: fxgate cannot do that.
SHARING_OPTIONS = ("public", "group", "ha_endpoint_id")


def check_options(options: dict[str, Any]) -> None:
    """Refuse sharing options set to anything but their defaults, and unknown names."""
    for name in SHARING_OPTIONS:
        if options.get(name):
            raise NotOffered(
                f"register_function({name}=...) is not offered: the fxgate daemon registers "
                "functions with its own Globus credentials, keyed by their code, so it cannot "
                "share or restrict one for you; register it with the Globus Compute SDK and "
                "pass its id to submit_to_registered_function"
            )
    unknown = set(options) - IGNORED_OPTIONS - set(SHARING_OPTIONS)
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(unknown))}")


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
