"""Scenario (f), local upstream: N trivial tasks end to end vs ProcessPoolExecutor.

Uses bench/local_upstream.py's own functions: one Executor on endpoint
"local" submits N tasks through a daemon with as many workers as cores and
waits for every result (durable accept and durable result included), beside
concurrent.futures.ProcessPoolExecutor with the same number of workers; best
of a few rounds each, after a warm-up of the daemon's workers.
"""

from __future__ import annotations

import os

from bench.env import BenchEnv
from bench.local_upstream import run_fxgate, run_pool
from bench.report import Outcome, Row, fmt, ratio
from bench.sizes import Scale

GOAL = 0.5


def run(env: BenchEnv, scale: Scale) -> Outcome:
    n, rounds = scale.local_tasks, scale.local_rounds
    workers = os.cpu_count() or 2
    daemon = env.daemon("f-daemon", workers=workers)
    try:
        run_fxgate(daemon.address, 200)  # warm the workers
        fx_s = min(run_fxgate(daemon.address, n) for _ in range(rounds))
    finally:
        env.stop_daemon(daemon)
    pool_s = min(run_pool(workers, n) for _ in range(rounds))
    fx, pool = n / fx_s, n / pool_s
    rows = [
        Row(
            f"tasks/s end to end ({n:,} trivial tasks, {workers} workers, best of {rounds})",
            fx,
            f"{fmt(pool)} (ProcessPoolExecutor)",
            ratio=ratio(fx, pool) + " ProcessPool",
            goal="≥ 0.5x ProcessPoolExecutor",
            met=fx >= GOAL * pool,
        )
    ]
    details = {"fxgate_s": fx_s, "pool_s": pool_s, "tasks": n, "workers": workers}
    # run_fxgate and run_pool assert that every value came back right
    return Outcome("f", "local upstream", rows, True, details)
