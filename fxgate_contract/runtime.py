"""The ``user_runtime`` a task batch carries, described as the Globus Compute SDK does.

An endpoint renders its user config template with it and parses
``globus_compute_sdk_version`` with ``packaging.version.Version``: a value that
is not a PEP 440 version stops a 4.19 endpoint. fxgate speaks the wire format of
SDK 4.19.0, so that is the version it states; the rest describes the process
that serialized the function (the client's, not the daemon's), key for key as
``globus_compute_sdk.sdk.batch.create_user_runtime`` builds it.
"""

from __future__ import annotations

import functools
import json
import platform
import sys
from typing import Any

# The SDK release whose wire format fxgate speaks, as a PEP 440 version.
SDK_VERSION = "4.19.0"
# The globus-sdk release that SDK 4.19.0 is installed with (it pins >=4.4.0,<5).
GLOBUS_SDK_VERSION = "4.10.0"


def user_runtime() -> dict[str, Any]:
    """This process's runtime, with exactly the keys (and JSON shapes) the SDK sends.

    A new dict each call (the caller may change it), read from one description.
    """
    loaded: dict[str, Any] = json.loads(user_runtime_json())
    return loaded


def _describe() -> dict[str, Any]:
    return {
        "globus_compute_sdk_version": SDK_VERSION,
        "globus_sdk_version": GLOBUS_SDK_VERSION,
        "python_version": sys.version,
        "python": {
            "version": platform.python_version(),
            "version_description": sys.version,
            "version_tuple": list(sys.version_info[:3]),
            "version_info": list(sys.version_info),
            "implementation": platform.python_implementation(),
            "compiler": platform.python_compiler(),
        },
        "platform": {
            "architecture": list(platform.architecture()),
            "machine": platform.machine(),
            "node": platform.node(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "release": platform.release(),
        },
    }


@functools.cache
def user_runtime_json() -> str:
    """user_runtime() as JSON text, built once per process (platform.processor may fork)."""
    return json.dumps(_describe())
