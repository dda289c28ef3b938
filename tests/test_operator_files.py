"""The systemd units are valid as systemd reads them, and say what the daemon relies on.

`systemd-analyze verify` loads a unit as the manager would and reports every
unknown key, bad value and missing binary, yet exits 0 for most of them: so
"clean" here means exit 0 AND no output, and a deliberately broken copy
proves the check can fail. It refuses a unit whose ExecStart binary does not
exist, and the units name where an install puts it (/opt/fxgate/bin,
~/.local/bin), so each unit is verified as a copy in a temp dir with
ExecStart pointed at this venv's real `fxgate`; nothing else is changed.
A user unit needs a user runtime dir: a private XDG_RUNTIME_DIR is given.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
FXGATE = Path(sys.executable).parent / "fxgate"
UNITS = {"fxgate.service": False, "fxgate-user.service": True}  # name: is a user unit


def verify(unit: Path, user: bool, tmp_path: Path) -> str:
    """systemd-analyze verify's whole output for the unit (empty: clean)."""
    assert ANALYZE is not None
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    cmd = [ANALYZE, *(["--user"] if user else []), "verify", str(unit)]
    proc = subprocess.run(
        cmd,
        env=os.environ | {"XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_PAGER": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return f"{proc.stdout}{proc.stderr}" + (
        "" if proc.returncode == 0 else f"(exit {proc.returncode})"
    )


def installed_copy(name: str, tmp_path: Path, text: str | None = None) -> Path:
    text = text if text is not None else (ROOT / "systemd" / name).read_text()
    text, n = re.subn(r"^ExecStart=\S+/fxgate ", f"ExecStart={FXGATE} ", text, flags=re.M)
    assert n == 1, "the unit has one ExecStart running fxgate"
    path = tmp_path / name
    path.write_text(text)
    return path


@needs_analyze
@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_verifies_clean(name: str, tmp_path: Path) -> None:
    assert FXGATE.exists()
    assert verify(installed_copy(name, tmp_path), UNITS[name], tmp_path) == ""


@needs_analyze
@pytest.mark.parametrize("name", sorted(UNITS))
def test_verify_catches_a_broken_unit(name: str, tmp_path: Path) -> None:
    text = (ROOT / "systemd" / name).read_text().replace("WatchdogSec=30", "WatchdogSec=soon")
    out = verify(installed_copy(name, tmp_path, text), UNITS[name], tmp_path)
    assert "WatchdogSec" in out or "sec value" in out, out


@pytest.mark.parametrize("name", sorted(UNITS))
def test_units_use_the_notify_protocol(name: str) -> None:
    text = (ROOT / "systemd" / name).read_text()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30", "KillMode=mixed"):
        assert re.search(f"^{line}$", text, re.M), f"{name} lacks {line}"
    assert re.search(r"^WorkingDirectory=", text, re.M)


def test_system_unit_is_hardened() -> None:
    text = (ROOT / "systemd" / "fxgate.service").read_text()
    for line in (
        "User=fxgate",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=fxgate",
        "WorkingDirectory=/var/lib/fxgate",
        "NoNewPrivileges=yes",
    ):
        assert re.search(f"^{line}$", text, re.M), f"fxgate.service lacks {line}"
