"""Scenario (d), submit: N trivial tasks from one client, how fast are they safe, and upstream?

A client script submits N tasks in a loop. "Accepted" is the client's own
task_count_submitted reaching N: for fxgate that is durable acceptance by the
daemon (committed to SQLite, the script may now die); for the SDK it is
acceptance by the web service. "Upstream" is the moment the fake web service
has recorded all N tasks, seen from the fake itself. Both are measured from
the first submit() call. The script exits without waiting for results.
"""

from __future__ import annotations

import time
from typing import Any

from bench.env import BenchEnv
from bench.flows import rate
from bench.plan import argument_of
from bench.report import Outcome, Row, ratio
from bench.sizes import Scale

GOAL_ACCEPT = 20_000.0


def _submit(env: BenchEnv, kind: str, n: int) -> dict[str, Any]:
    daemon = env.daemon("d-daemon") if kind == "fxgate" else None
    since = env.mark()
    spec = env.client_spec(kind, daemon, role="run", n=n, base=0, wait=False)
    worker = env.start_worker(f"d-{kind}", spec)
    tasks = env.await_tasks(since, n, [worker])
    upstream_at = time.time()
    out = env.collect(worker)
    if daemon is not None:
        env.stop_daemon(daemon)
    once = sorted(argument_of(t.payload) for t in tasks) == list(range(n))
    errors = out.get("errors", []) + ([] if once else ["tasks not submitted exactly once"])
    return {
        "accept_rate": rate(n, out.get("t_ready"), out.get("t_accepted")),
        "upstream_rate": rate(n, out.get("t_ready"), upstream_at),
        "queue_s": out["t_queued"] - out["t_ready"] if "t_queued" in out else None,
        "correct": bool(out.get("correct")) and once,
        "errors": errors,
    }


def run(env: BenchEnv, scale: Scale) -> Outcome:
    n = scale.submit_tasks
    fx, sdk = _submit(env, "fxgate", n), _submit(env, "sdk", n)
    rows = [
        Row(
            f"tasks/s to accepted ({n:,} tasks; fxgate: durable in the daemon, "
            "SDK: by the web service)",
            fx["accept_rate"],
            sdk["accept_rate"],
            ratio=ratio(fx["accept_rate"], sdk["accept_rate"]) + " SDK",
            goal="≥ 20,000/s",
            met=fx["accept_rate"] >= GOAL_ACCEPT,
        ),
        Row(
            "tasks/s to all submitted upstream (recorded by the fake service)",
            fx["upstream_rate"],
            sdk["upstream_rate"],
            ratio=ratio(fx["upstream_rate"], sdk["upstream_rate"]) + " SDK",
            goal="≥ SDK",
            met=fx["upstream_rate"] >= sdk["upstream_rate"],
        ),
    ]
    correct = fx["correct"] and sdk["correct"]
    details: dict[str, Any] = {"fxgate": fx, "sdk": sdk, "tasks": n}
    if not correct:
        details["errors"] = fx["errors"] + sdk["errors"]
    return Outcome("d", "submit", rows, correct, details)
