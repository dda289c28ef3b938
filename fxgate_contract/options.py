"""Task options (user_endpoint_config, resource_specification) checked as the SDK checks them.

The SDK refuses a value that is not a dict, or that json.dumps refuses, at the
call or assignment that gives it; fxgate does the same, with the SDK's words,
so a mistake surfaces where it was made and not later on a submitter thread.
The value travels as JSON text ("" when absent or empty, as the SDK omits it).
"""

from __future__ import annotations

import json
from typing import Any

# What the SDK's Executor says for each option: (wrong type, not JSON).
_WORDING = {
    "resource_specification": (
        "Resource specification must be of type dict,not {}",
        "Resource specification must be JSON-serializable",
    ),
    "user_endpoint_config": (
        "Config must be of type dict, not {}",
        "Configuration must be JSON-serializable",
    ),
}


def checked_option(name: str, value: Any) -> dict[str, Any] | None:
    """value itself if it is None or a JSON-serializable dict; TypeError otherwise."""
    if value is None:
        return None
    wrong_type, not_json = _WORDING[name]
    if not isinstance(value, dict):
        raise TypeError(wrong_type.format(type(value).__name__))
    try:
        json.dumps(value)
    except Exception as e:
        raise TypeError(not_json) from e
    return value


def option_json(name: str, value: Any) -> str:
    """The JSON text an option travels as: "" for None or {} (the SDK leaves those out)."""
    checked = checked_option(name, value)
    return json.dumps(checked) if checked else ""
