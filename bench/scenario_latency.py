"""Scenario (b), latency: results published one at a time, how long until each future is done?

N tasks are submitted and accepted upstream; then the publisher process
publishes their results one by one, each after a random pause, so results
land at random phases of whatever polling or batching a client does. A
sample is the client's done-callback time minus the publisher's time just
before basic_publish (both time.time() on one machine).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.env import BenchEnv
from bench.flows import NAN, latencies_ms, submit_then_publish
from bench.report import Outcome, Row, ratio
from bench.sizes import Scale

PERCENTILES = {"p50": 50, "p90": 90, "p99": 99, "max": 100}
GOALS = {"p50": 5.0, "p99": 25.0}


def _client(env: BenchEnv, kind: str, scale: Scale) -> dict[str, Any]:
    n = scale.latency_samples
    daemon = env.daemon("b-daemon") if kind == "fxgate" else None
    r = submit_then_publish(env, f"b-{kind}", kind, n, daemon=daemon, paced=scale.latency_gap_s)
    if daemon is not None:
        env.stop_daemon(daemon)
    lat = latencies_ms(r)
    stats = {k: float(np.percentile(lat, q)) if lat else NAN for k, q in PERCENTILES.items()}
    correct = bool(r.out.get("correct")) and len(lat) == n
    errors = r.out.get("errors", []) + ([] if len(lat) == n else [f"{len(lat)} of {n} samples"])
    return {"latencies_ms": lat, "stats": stats, "correct": correct, "errors": errors}


def run(env: BenchEnv, scale: Scale) -> Outcome:
    fx, sdk = _client(env, "fxgate", scale), _client(env, "sdk", scale)
    rows = []
    for key in PERCENTILES:
        a, b = fx["stats"][key], sdk["stats"][key]
        goal = GOALS.get(key)
        rows.append(
            Row(
                f"{key} ms, publish → future done ({scale.latency_samples} results)",
                a,
                b,
                ratio=ratio(a, b) + " SDK",
                goal=f"≤ {goal:g} ms" if goal else "",
                met=(a <= goal) if goal else None,
            )
        )
    correct = fx["correct"] and sdk["correct"]
    details: dict[str, Any] = {
        "latencies_ms": {"fxgate": fx["latencies_ms"], "SDK Executor": sdk["latencies_ms"]},
        "stats_ms": {"fxgate": fx["stats"], "sdk": sdk["stats"]},
        "gap_s": list(scale.latency_gap_s),
    }
    if not correct:
        details["errors"] = fx["errors"] + sdk["errors"]
    notes = [
        f"random pause before each publish: uniform {scale.latency_gap_s[0]}–"
        f"{scale.latency_gap_s[1]} s; the SDK's result watcher matches results to futures "
        "every 0.5 s (its poll_period_s), which sets its distribution"
    ]
    return Outcome("b", "latency", rows, correct, details, notes)
