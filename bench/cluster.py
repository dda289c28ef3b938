"""Trivial tasks through a cluster endpoint (Globus Compute's engine, Parsl's LocalProvider)
against fxgate's local pool, side by side in one daemon, as a table.

Both endpoints get the same 2 workers on this machine. Throughput: a burst of
--burst tasks submitted at once, first submit to last result. Latency: --serial
tasks one at a time with warm workers, submit to result. The column for the
same engine and provider driven directly by a Parsl script (the engine's own
limit) comes from the direct-engine baseline (run separately).

Run:  python bench/cluster.py [--burst 2000] [--serial 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from client import Executor
from tests.daemon import DaemonProcess

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
[cluster.bench]
engine = "GlobusComputeEngine"
max_workers_per_node = 2
address = "127.0.0.1"
[cluster.bench.provider]
type = "LocalProvider"
init_blocks = 1
min_blocks = 0
max_blocks = 1
"""


def noop(x: int) -> int:
    return x


def burst(ex: Executor, n: int) -> float:
    """Tasks per second for n tasks submitted at once."""
    t0 = time.perf_counter()
    futures = [ex.submit(noop, i) for i in range(n)]
    for f in futures:
        f.result(timeout=600)
    return n / (time.perf_counter() - t0)


def serial(ex: Executor, n: int) -> list[float]:
    """Milliseconds from submit to result, one task at a time."""
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        ex.submit(noop, i).result(timeout=120)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def measure(endpoint: str, n_burst: int, n_serial: int) -> tuple[float, float, float, float]:
    """(seconds to the first result, tasks/s, p50 ms, p90 ms) on one endpoint."""
    with Executor(endpoint_id=endpoint) as ex:
        t0 = time.perf_counter()
        ex.submit(noop, 0).result(timeout=300)  # workers start: not counted below
        first = time.perf_counter() - t0
        burst(ex, min(200, n_burst))  # warm
        rate = burst(ex, n_burst)
        lat = serial(ex, n_serial)
    q = statistics.quantiles(lat, n=10)
    return first, rate, statistics.median(lat), q[8]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--burst", type=int, default=2000)
    ap.add_argument("--serial", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fxgate-bench-cluster-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        (state / "config.toml").write_text(CONFIG)
        daemon = DaemonProcess(state, workers=2)
        daemon.start(timeout=180)

        os.environ["FXGATE_ADDRESS"] = daemon.address
        try:
            rows = [
                ("fxgate local pool (2 workers)", measure("local", args.burst, args.serial)),
                (
                    "fxgate cluster endpoint (HTEX, LocalProvider, 2 workers)",
                    measure("bench", args.burst, args.serial),
                ),
            ]
        finally:
            daemon.stop()
    print(
        f"| trivial tasks | first result s | burst of {args.burst:,}: tasks/s "
        f"| p50 ms ({args.serial} serial) | p90 ms |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, (first, rate, p50, p90) in rows:
        print(f"| {name} | {first:.1f} | {rate:,.0f} | {p50:.1f} | {p90:.1f} |")
    print("| same engine + provider driven directly (Parsl script) | see baseline | | | |")


if __name__ == "__main__":
    main()
