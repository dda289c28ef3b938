"""Local upstream throughput: N trivial tasks end to end through a real daemon,
beside concurrent.futures.ProcessPoolExecutor with the same number of workers.

Run: .venv/bin/python bench/local_upstream.py [--tasks 10000] [--workers 2]
Starts its own daemon on a temporary state dir; prints a markdown table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client import Executor  # noqa: E402
from tests.daemon import DaemonProcess  # noqa: E402


def noop(x: int) -> int:
    return x


def run_fxgate(address: str, n: int) -> float:
    start = time.perf_counter()
    with Executor(endpoint_id="local", address=address) as ex:
        futures = [ex.submit(noop, i) for i in range(n)]
        results = [f.result() for f in futures]
    elapsed = time.perf_counter() - start
    assert results == list(range(n))
    return elapsed


def run_pool(workers: int, n: int) -> float:
    start = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(noop, i) for i in range(n)]
        results = [f.result() for f in futures]
    elapsed = time.perf_counter() - start
    assert results == list(range(n))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        daemon = DaemonProcess(Path(tmp) / "state", workers=args.workers)
        daemon.start()
        try:
            run_fxgate(daemon.address, 200)  # warm the workers
            fx = min(run_fxgate(daemon.address, args.tasks) for _ in range(args.rounds))
        finally:
            daemon.stop()
    pool = min(run_pool(args.workers, args.tasks) for _ in range(args.rounds))
    n = args.tasks
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"{n} trivial tasks, {args.workers} workers, best of {args.rounds}\n")
    print("| runner | seconds | tasks/s |")
    print("|---|---|---|")
    print(f"| fxgate local upstream (durable, via daemon) | {fx:.2f} | {n / fx:,.0f} |")
    print(f"| ProcessPoolExecutor | {pool:.2f} | {n / pool:,.0f} |")
    print(f"\nratio fxgate / ProcessPoolExecutor: {pool / fx:.2f}")


if __name__ == "__main__":
    main()
