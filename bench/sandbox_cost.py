"""What a local task's sandbox costs its worker, in CPU time per task.

Every local task runs in a directory of its own (gateway/sandbox.py). This
times the worker-side steps alone, as the worker runs them, in this process:
enter + leave for a task that leaves its sandbox empty (the rename path), and
for one that leaves a file (the delete path), against a bare loop. CPU time
(time.process_time) plus wall time, so a busy machine shows in the gap.

Run:  python bench/sandbox_cost.py [--tasks 20000]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable

from gateway.sandbox import RunDir


def _measure(tasks: int, body: Callable[[str], None]) -> tuple[float, float]:
    """(cpu us, wall us) per task for `tasks` tasks, each entering and leaving a sandbox."""
    run_dir = RunDir()
    ids = [str(uuid.uuid4()) for _ in range(tasks + 1)]
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(tasks):
        path = run_dir.enter(ids[i])
        body(path)
        run_dir.leave(path, ids[i + 1])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    run_dir.close()
    return cpu / tasks * 1e6, wall / tasks * 1e6


def _bare(tasks: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(tasks):
        pass
    return (time.process_time() - cpu) / tasks * 1e6, (time.perf_counter() - wall) / tasks * 1e6


def _writes_a_file(path: str) -> None:
    with open(os.path.join(path, "out.txt"), "w") as f:
        f.write("x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", type=int, default=20_000)
    n = ap.parse_args().tasks
    rows = [
        ("no sandbox (bare loop)", _bare(n)),
        ("sandbox left empty (rename)", _measure(n, lambda _p: None)),
        ("sandbox with one file (delete, new spare)", _measure(max(1, n // 10), _writes_a_file)),
    ]
    print(f"| per task ({n:,} tasks) | CPU us | wall us |\n|---|---:|---:|")
    for name, (cpu, wall) in rows:
        print(f"| {name} | {cpu:.1f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
