"""Scenario (g), many scripts: P client processes at once, each submitting and awaiting n tasks.

fxgate: P scripts share the one resident daemon (already running, as it
would be). SDK: P scripts each run their own SDK Executor (own HTTP client,
own AMQP connection). In both, a publisher process publishes each result as
soon as the fake web service accepted its task. Measured: wall time from
starting the P processes until every one has checked all its values and
exited, and the peak of the summed RSS of every process involved (the
daemon and its local workers included for fxgate), sampled every 0.1 s.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.env import BenchEnv
from bench.flows import errors_of, start_workers
from bench.plan import StreamPublisher, feed_as_accepted
from bench.procs import RssSampler, cpu_s
from bench.report import Outcome, Row, ratio
from bench.sizes import Scale

GOAL_SPEEDUP = 2.0
GOAL_MEMORY = 0.75


def _many(env: BenchEnv, kind: str, procs: int, n: int) -> dict[str, Any]:
    daemon = env.daemon("g-daemon") if kind == "fxgate" else None
    sampler = RssSampler()
    if daemon is not None:
        assert daemon.proc is not None
        sampler.watch(daemon.proc.pid, label="daemon", children=True)
    since = env.mark()
    specs = [env.client_spec(kind, daemon, role="run", n=n, base=k * n) for k in range(procs)]
    meters = {"broker": env.broker_pid, "fake service": os.getpid()}
    if daemon is not None and daemon.proc is not None:
        meters["daemon"] = daemon.proc.pid
    before = {k: cpu_s(pid, children=k == "daemon") for k, pid in meters.items()}
    started = time.time()
    workers = start_workers(env, f"g-{kind}", specs)
    for w in workers:
        sampler.watch(w.proc.pid)
    sampler.start()
    publisher = StreamPublisher(env, f"g-{kind}-publisher")
    try:
        feed_as_accepted(env, publisher, since, procs * n, workers)
        t_upstream = time.time()
    finally:
        published = publisher.close()
    results = [env.collect(w) for w in workers]
    wall = time.time() - started
    timeline = _timeline(started, t_upstream, results)
    peak = sampler.stop()
    cpu = {k: cpu_s(pid, children=k == "daemon") - before[k] for k, pid in meters.items()}
    cpu["clients"] = sum(r.get("cpu_end", 0.0) for r in results)
    cpu["publisher"] = published.get("cpu_s", 0.0)
    if daemon is not None:
        env.stop_daemon(daemon)
    return {
        "wall_s": wall,
        "peak_rss_mb": peak,
        "peak_pss_mb": sampler.peak_pss_mb,
        "peak_rss_by_part_mb": sampler.peak_by_label,
        "rss_samples": sampler.samples,
        "cpu": cpu,
        "cpu_own_s": cpu["clients"] + cpu.get("daemon", 0.0),
        "cpu_stage_s": cpu["broker"] + cpu["fake service"] + cpu["publisher"],
        "timeline_s": timeline,
        "correct": all(r.get("correct") for r in results),
        "errors": errors_of(results),
    }


def _timeline(started: float, t_upstream: float, results: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds from the start of the scripts to each stage, for the note under the table."""

    def at(key: str, pick: Any) -> float:
        times = sorted(r[key] for r in results if key in r)
        return pick(times) - started if times else float("nan")

    return {
        "scripts ready (median)": at("t_ready", lambda t: t[len(t) // 2]),
        "all accepted": at("t_accepted", lambda t: t[-1]),
        "all at the service": t_upstream - started,
        "all results": at("t_last_done", lambda t: t[-1]),
    }


def run(env: BenchEnv, scale: Scale) -> Outcome:
    p, n = scale.many_procs, scale.many_tasks
    fx, sdk = _many(env, "fxgate", p, n), _many(env, "sdk", p, n)
    rows = [
        Row(
            f"s wall, start of {p} scripts × {n:,} tasks → all results checked",
            fx["wall_s"],
            sdk["wall_s"],
            ratio=ratio(fx["wall_s"], sdk["wall_s"]) + " SDK",
            goal="≤ 0.5x SDK (2x faster)",
            met=fx["wall_s"] * GOAL_SPEEDUP <= sdk["wall_s"],
        ),
        Row(
            "MB peak summed RSS of all processes (fxgate: daemon + its workers included)",
            fx["peak_rss_mb"],
            sdk["peak_rss_mb"],
            ratio=ratio(fx["peak_rss_mb"], sdk["peak_rss_mb"]) + " SDK",
            goal="≤ 0.75x SDK",
            met=fx["peak_rss_mb"] <= GOAL_MEMORY * sdk["peak_rss_mb"],
        ),
        Row(
            "MB peak summed PSS (pages shared between processes split among them)",
            fx["peak_pss_mb"],
            sdk["peak_pss_mb"],
            ratio=ratio(fx["peak_pss_mb"], sdk["peak_pss_mb"]) + " SDK",
        ),
        Row(
            "CPU s summed over the scripts (fxgate: + daemon and its workers)",
            fx["cpu_own_s"],
            sdk["cpu_own_s"],
            ratio=ratio(fx["cpu_own_s"], sdk["cpu_own_s"]) + " SDK",
        ),
        Row(
            "CPU s of the shared stage meanwhile (broker + fake service + publisher)",
            fx["cpu_stage_s"],
            sdk["cpu_stage_s"],
        ),
    ]
    correct = fx["correct"] and sdk["correct"]
    details: dict[str, Any] = {"fxgate": fx, "sdk": sdk, "procs": p, "tasks_each": n}
    if not correct:
        details["errors"] = fx["errors"] + sdk["errors"]
    fx_parts = fx["peak_rss_by_part_mb"]
    cores = os.cpu_count() or 1
    busy = {
        k: (r["cpu_own_s"] + r["cpu_stage_s"]) / (r["wall_s"] * cores)
        for k, r in (("fxgate", fx), ("SDK", sdk))
    }
    notes = [
        "all processes together kept the machine's "
        f"{cores} cores {busy['fxgate']:.0%} busy during the fxgate round and "
        f"{busy['SDK']:.0%} during the SDK round (CPU s of both CPU rows / wall / cores)",
        f"peak RSS by part: fxgate daemon + its local workers {fx_parts.get('daemon', 0):.0f} MB, "
        f"{p} fxgate scripts {fx_parts.get('clients', 0):.0f} MB "
        f"({fx_parts.get('clients', 0) / p:.0f} MB each); {p} SDK scripts "
        f"{sdk['peak_rss_mb']:.0f} MB ({sdk['peak_rss_mb'] / p:.0f} MB each)",
        *(
            f"timeline of the {k} round, s from the start: "
            + ", ".join(f"{stage} {t:.2f}" for stage, t in r["timeline_s"].items())
            for k, r in (("fxgate", fx), ("SDK", sdk))
        ),
    ]
    return Outcome("g", "many scripts", rows, correct, details, notes)
