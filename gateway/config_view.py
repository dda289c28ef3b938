"""What `fxgate config` shows: every effective setting, where it came from, secrets masked.

An operator debugging "why does the daemon use X" needs the value and its
source (default, config file, environment, command line) in one place, and
must be able to paste that output into a ticket without leaking a token.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from gateway.config import SECRETS, Origins, Settings, env_name

MASK = "********"


def rows(settings: Settings, origins: Origins) -> list[dict[str, Any]]:
    """One row per setting: name, value (masked when secret), source, environment name."""
    out: list[dict[str, Any]] = []
    for name, value in _flatten(settings, ""):
        out.append(
            {
                "name": name,
                "value": _shown(name, value),
                "source": origins.get(name, "default"),
                "env": env_name(name),
            }
        )
    return out


def render(settings: Settings, origins: Origins, as_json: bool) -> str:
    """The text `fxgate config` prints: aligned lines, or a JSON document."""
    table = rows(settings, origins)
    effective = {"address": settings.resolved_address, "db": mask_url(settings.resolved_db)}
    if as_json:
        return json.dumps({"settings": table, "effective": effective}, indent=2)
    width = max(len(r["name"]) for r in table)
    lines = [f"{r['name']:<{width}} = {json.dumps(r['value'])}  ({r['source']})" for r in table]
    lines.append("")
    lines.append(f"serves {effective['address']}; store {effective['db']}")
    return "\n".join(lines)


def _flatten(obj: Any, prefix: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.extend(_flatten(value, f"{prefix}{f.name}."))
        else:
            out.append((f"{prefix}{f.name}", value))
    return out


def _shown(name: str, value: Any) -> Any:
    if name in SECRETS:
        return MASK if value else ""
    if name == "db":
        return mask_url(value) if value else ""
    if isinstance(value, Path):
        return str(value)
    return value


def mask_url(url: str) -> str:
    """A database URL with its password masked; one that does not parse is masked whole."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return MASK
