"""Local upstream with large arguments and results: identity tasks of a given size, end to end.

Fast tasks whose argument and result are both several KB are the load where
large batches to a worker meet large results from it; this checks that every
task completes with the right value, and how fast, at any size.

Run: .venv/bin/python bench/local_sizes.py [--spec 8000x20000 --spec 1000000x20] [--workers 2]
Starts its own daemon per spec on a temporary state dir; prints a markdown table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client import Executor  # noqa: E402
from tests.daemon import DaemonProcess  # noqa: E402


def identity(x: str) -> str:
    return x


def run(size: int, n: int, workers: int, timeout: float) -> tuple[int, int, float]:
    """(correct results, unfinished after timeout, seconds) for n tasks of size characters."""
    with tempfile.TemporaryDirectory() as tmp:
        daemon = DaemonProcess(Path(tmp) / "state", workers=workers)
        daemon.start()
        try:
            arg = "x" * size
            start = time.perf_counter()
            ex = Executor(endpoint_id="local", address=daemon.address)
            futures = [ex.submit(identity, arg) for _ in range(n)]
            done, pending = concurrent.futures.wait(futures, timeout=timeout)
            elapsed = time.perf_counter() - start
            ex.shutdown(wait=False, cancel_futures=True)  # waiting on a stalled pool never ends
            return sum(1 for f in done if f.result() == arg), len(pending), elapsed
        finally:
            daemon.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", action="append", help="SIZExCOUNT, e.g. 8000x20000")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    print("| argument = result | tasks | correct | unfinished | s | tasks/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for spec in args.spec or ["8000x20000", "1000000x20"]:
        size, n = (int(x) for x in spec.split("x"))
        ok, pending, s = run(size, n, args.workers, args.timeout)
        print(f"| {size:,} B | {n:,} | {ok:,} | {pending:,} | {s:.1f} | {ok / s:,.0f} |")


if __name__ == "__main__":
    main()
