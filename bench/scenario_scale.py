"""Scenario (e), scale: a daemon holding a million finished tasks, then 200 clients at once.

The store is seeded directly (bench/seed.py) with groups of finished tasks,
then a daemon is started on it. Measured: the daemon's RSS once serving,
`fxgate status` as a user runs it (a new process: interpreter, imports, one
read of the daemon's status socket) and the Status RPC alone from a warm
client, and re-attaching to one
group among them from a new process. Then C client processes at once each
submit k tasks in their own group and watch it while all results are
published; the daemon's peak RSS is sampled and every client checks its values.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.env import BenchEnv
from bench.flows import errors_of, start_workers
from bench.plan import publish, result_lines
from bench.procs import RssSampler, rss_mb
from bench.report import Outcome, Row
from bench.seed import seed
from bench.sizes import Scale
from client import Client
from tests.daemon import DaemonProcess

GOAL_RSS_STORED = 300.0
GOAL_STATUS_MS = 100.0
GOAL_RSS_CLIENTS = 500.0
REPEATS = 5


def _status_cli_ms(daemon: DaemonProcess) -> float:
    """Median wall time of the `fxgate status` command, run as a user would."""
    exe = Path(sys.executable).with_name("fxgate")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.cli"]
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        subprocess.run(
            [*cmd, "status", "--address", daemon.address], check=True, capture_output=True
        )
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def _status_rpc_ms(daemon: DaemonProcess) -> tuple[float, dict[str, Any]]:
    with Client(address=daemon.address) as c:
        status = c.status()  # connects the channel
        times = []
        for _ in range(REPEATS):
            began = time.perf_counter()
            status = c.status()
            times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), status


def _stored(env: BenchEnv, scale: Scale) -> tuple[DaemonProcess, dict[str, Any]]:
    groups = max(1, scale.stored_tasks // scale.group_tasks)
    seeded = seed(env.workdir / "e-state", env.fake.endpoint_id, groups, scale.group_tasks)
    began = time.monotonic()
    daemon = env.daemon("e-daemon", state_dir=env.workdir / "e-state")
    started_s = time.monotonic() - began
    assert daemon.proc is not None
    rss_serving = rss_mb(daemon.proc.pid)
    status_cli = _status_cli_ms(daemon)
    status_rpc, status = _status_rpc_ms(daemon)
    target = groups // 2
    spec = env.client_spec(
        "fxgate",
        daemon,
        role="reload",
        n=scale.group_tasks,
        base=target * scale.group_tasks,
        group=seeded.groups[target],
    )
    out = env.collect(env.start_worker("e-reattach", spec))
    stored = status["tasks"].get("SUCCESS", 0)
    return daemon, {
        "stored": stored,
        "groups": groups,
        "seed_s": seeded.seconds,
        "db_mb": seeded.db_bytes / 2**20,
        "start_s": started_s,
        "rss_serving_mb": rss_serving,
        "rss_after_reattach_mb": rss_mb(daemon.proc.pid),
        "status_cli_ms": status_cli,
        "status_rpc_ms": status_rpc,
        "reattach_s": out["t_last_done"] - out["t_ready"] if out.get("correct") else float("nan"),
        "correct": bool(out.get("correct")) and stored == groups * scale.group_tasks,
        "errors": out.get("errors", []),
    }


def _clients(env: BenchEnv, daemon: DaemonProcess, scale: Scale) -> dict[str, Any]:
    c, k = scale.scale_clients, scale.scale_client_tasks
    assert daemon.proc is not None
    sampler = RssSampler()
    sampler.watch(daemon.proc.pid, label="daemon")
    sampler.start()
    since = env.mark()
    base = 10 * scale.stored_tasks  # values apart from the seeded ones
    specs = [
        env.client_spec("fxgate", daemon, role="run", n=k, base=base + i * k) for i in range(c)
    ]
    began = time.time()
    workers = start_workers(env, "e-client", specs)
    tasks = env.await_tasks(since, c * k, workers)
    env.wait_consumers({env.fake.queue_name(t.task_group_id) for t in tasks})
    watching = time.time()
    publish(env, "e-publisher", result_lines(env, tasks))
    results = [env.collect(w) for w in workers]
    done = time.time()
    peak = sampler.stop()
    return {
        "clients": c,
        "tasks_each": k,
        "peak_rss_mb": peak,
        "workers_rss_mb": rss_mb(daemon.proc.pid, children=True) - rss_mb(daemon.proc.pid),
        "all_watching_s": watching - began,
        "results_s": done - watching,
        "correct": all(r.get("correct") for r in results),
        "errors": errors_of(results),
    }


def run(env: BenchEnv, scale: Scale) -> Outcome:
    daemon, st = _stored(env, scale)
    try:
        cl = _clients(env, daemon, scale)
    finally:
        env.stop_daemon(daemon)
    n = st["stored"]
    rows = [
        Row(
            f"MB daemon RSS, serving with {n:,} stored tasks",
            st["rss_serving_mb"],
            goal="≤ 300 MB",
            met=st["rss_serving_mb"] <= GOAL_RSS_STORED,
        ),
        Row(
            "ms `fxgate status` command (new process), median of 5",
            st["status_cli_ms"],
            goal="≤ 100 ms",
            met=st["status_cli_ms"] <= GOAL_STATUS_MS,
        ),
        Row("ms Status RPC alone (warm client), median of 5", st["status_rpc_ms"]),
        Row(f"s re-attach one {scale.group_tasks:,}-task group among them", st["reattach_s"]),
        Row("MB daemon RSS after that re-attach", st["rss_after_reattach_mb"]),
        Row(
            f"MB daemon peak RSS, {cl['clients']} client processes each watching its own group",
            cl["peak_rss_mb"],
            goal="≤ 500 MB",
            met=cl["peak_rss_mb"] <= GOAL_RSS_CLIENTS,
        ),
        Row(
            f"all results correct in all {cl['clients']} clients ({cl['tasks_each']} tasks each)",
            "yes" if cl["correct"] else "NO",
        ),
    ]
    correct = st["correct"] and cl["correct"]
    details: dict[str, Any] = {"stored": st, "clients": cl}
    if not correct:
        details["errors"] = st["errors"] + cl["errors"]
    notes = [
        f"seeded {n:,} tasks in {st['groups']} groups through gateway.store.database.Store in "
        f"{st['seed_s']:.1f} s (database {st['db_mb']:.0f} MB); daemon start on it "
        f"{st['start_s']:.1f} s; daemon RSS is the daemon process alone (its local workers: "
        f"{cl['workers_rss_mb']:.0f} MB more)",
    ]
    return Outcome("e", "scale", rows, correct, details, notes)
