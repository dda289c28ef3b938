"""The machine and software a run measured, for the header of its report.

Ratios from one run only mean something next to what they ran on: cores,
memory, CPU model, the load other work put on the machine, and the exact
versions of fxgate, the SDK, pika, grpcio and the RabbitMQ node itself.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

from tests.support.rabbitmq import RabbitNode

PACKAGES = ("fxgate", "globus-compute-sdk", "pika", "grpcio", "sqlalchemy", "dill")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


CODE_UNDER_TEST = ("gateway", "client", "pyproject.toml")


def git_state() -> str:
    """The last commit of the code under test, and whether the work tree differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%h %s", "--", *CODE_UNDER_TEST],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", *CODE_UNDER_TEST],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return head + (f" (+ uncommitted changes in {len(dirty)} files)" if dirty else "")


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        # what other work used of the machine in the second before the run
        "cpu_busy_before_pct": psutil.cpu_percent(interval=1.0),
        "git": git_state(),
    }


def versions(rabbit: RabbitNode) -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        out["rabbitmq"] = rabbit.ctl("version").strip()
        otp = rabbit.ctl("eval", "erlang:system_info(otp_release).").strip().strip('"')
        out["erlang/otp"] = otp
    except Exception as exc:  # noqa: BLE001 - a header line, never a failed run
        out["rabbitmq"] = f"unknown ({exc})"
    return out


def header_lines(
    scale: str,
    date: str,
    command: str,
    mach: dict[str, Any],
    vers: dict[str, str],
    load_end: list[float],
) -> list[str]:
    sw = ", ".join(f"{k} {v}" for k, v in vers.items())
    return [
        f"# fxgate vs globus-compute-sdk vs raw pika — scale {scale}, {date}",
        "",
        f"- command: `{command}`",
        f"- machine: {mach['cores']} cores ({mach['cpu']}), {mach['memory_gib']} GiB RAM, "
        f"{mach['platform']}",
        f"- Python {mach['python']}; {sw}",
        f"- fxgate source (last commit of gateway/, client/): {mach['git']}",
        f"- other work on the machine: CPU {mach['cpu_busy_before_pct']:.0f}% busy in the "
        f"second before the run; load average (1, 5, 15 min) at start {mach['load_avg']}, "
        f"at end {load_end} (this run's own processes included)",
        "- one run: every number below comes from this single invocation; ratios are "
        "fxgate / other unless the column says otherwise",
    ]
