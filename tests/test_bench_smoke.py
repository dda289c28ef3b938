"""The benchmark command itself works: a tiny run of every scenario, results all correct.

`bench/compare.py` is how issue 5's claims are proven; if it rots, nobody
notices until the next release. This runs it exactly as a person would (one
command, its own broker, fake service and daemons) at the smallest scale and
checks that every scenario produced numbers and that every value every client
received was the right one. No timing is asserted: this machine is not the
benchmark machine.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = set("abcdefg")


def _numbers(row: dict[str, object]) -> list[float]:
    return [v for v in (row["fxgate"], row["sdk"], row["raw"]) if isinstance(v, int | float)]


def _leftovers(markers: list[str]) -> list[str]:
    """Processes of this run still alive: a marker (its work or broker dir) in args or env."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            text = " ".join(p.info["cmdline"] or []) + " " + " ".join(p.environ().values())
        except psutil.Error:
            continue
        if any(m in text for m in markers):
            found.append(f"{p.info['pid']}: {' '.join(p.info['cmdline'] or [])[:200]}")
    return found


def test_small_benchmark_completes_with_numbers_and_correct_results(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FXGATE_")}
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "bench/compare.py", "--scale", "small", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    markers = re.findall(r"work dir (\S+)|\(data (\S+)\)", proc.stderr)
    dirs = [d for pair in markers for d in pair if d]
    assert len(dirs) == 2, proc.stderr[-3000:]
    assert not _leftovers(dirs)

    (report,) = out.glob("*-small.json")
    data = json.loads(report.read_text())
    assert set(data["scenarios"]) == SCENARIOS
    for key, scenario in data["scenarios"].items():
        assert scenario["correct"] is True, (key, scenario["details"].get("errors"))
        assert scenario["rows"], key
        for row in scenario["rows"]:
            values = _numbers(row) or [1.0]  # a row may be a verdict ("yes"), not a number
            assert all(math.isfinite(v) and v >= 0 for v in values), (key, row)
        assert any(isinstance(r["fxgate"], int | float) for r in scenario["rows"]), key

    latencies = data["scenarios"]["b"]["details"]["latencies_ms"]
    assert len(latencies["fxgate"]) == len(latencies["SDK Executor"]) == 20
    table = report.with_suffix(".md").read_text()
    assert "| scenario | metric | fxgate |" in table and "globus-compute-sdk 4.19.0" in table
    (chart,) = out.glob("latency-*-small.png")
    assert chart.stat().st_size > 10_000
