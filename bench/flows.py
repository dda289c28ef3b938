"""The client flows several scenarios share: submit, let the service accept, publish, collect.

One place decides what "accepted upstream", "listening" and "done" mean, so
fxgate and the SDK go through exactly the same steps: a client script submits
n tasks, the orchestrator waits until the fake web service accepted all of
them and the result queue has a consumer, a separate process publishes their
results, and the script reports when each future was done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.env import BenchEnv, Worker
from bench.plan import argument_of, publish, result_lines
from bench.procs import cpu_s
from tests.daemon import DaemonProcess
from tests.support.fake_globus import AcceptedTask

NAN = math.nan


@dataclass
class Round:
    """One submit-and-stream round: client results, publish times, upstream tasks, CPU use."""

    out: dict[str, Any]
    pub: dict[str, Any]
    tasks: list[AcceptedTask]
    # CPU seconds from the first publish until the client was done, per process
    cpu: dict[str, float] = field(default_factory=dict)


def submit_then_publish(
    env: BenchEnv,
    name: str,
    kind: str,
    n: int,
    *,
    daemon: DaemonProcess | None = None,
    paced: tuple[float, float] | None = None,
) -> Round:
    """Submit n tasks from a client script, then publish their results from another process."""
    since = env.mark()
    worker = env.start_worker(name, env.client_spec(kind, daemon, role="run", n=n, base=0))
    tasks = env.await_tasks(since, n, [worker])
    env.wait_consumers({env.fake.queue_name(t.task_group_id) for t in tasks})
    meters = {"broker": env.broker_pid}
    if daemon is not None and daemon.proc is not None:
        meters["daemon"] = daemon.proc.pid
    # The daemon's CPU includes its child processes (local workers, where any ran).
    before = {k: cpu_s(pid, children=k == "daemon") for k, pid in meters.items()}
    pub = publish(env, f"{name}-publisher", result_lines(env, tasks), paced=paced)
    out = env.collect(worker)
    cpu = {k: cpu_s(pid, children=k == "daemon") - before[k] for k, pid in meters.items()}
    cpu["publisher"] = pub.get("cpu_s", NAN)
    cpu["client"] = out.get("cpu_end", NAN) - out.get("cpu_accepted", NAN)
    return Round(out, pub, tasks, cpu)


def latencies_ms(r: Round) -> list[float]:
    """Per task: its future's done time minus its result's publish time (base 0 workers)."""
    done, times = r.out.get("done") or [], r.pub.get("times") or {}
    lat = []
    for t in r.tasks:
        i = argument_of(t.payload)
        if i < len(done) and done[i] and t.task_id in times:
            lat.append((done[i] - times[t.task_id]) * 1000)
    return lat


def rate(n: int, start: float | None, end: float | None) -> float:
    if not start or not end or end <= start:
        return NAN
    return n / (end - start)


def start_workers(env: BenchEnv, prefix: str, specs: list[dict[str, Any]]) -> list[Worker]:
    return [env.start_worker(f"{prefix}-{i}", spec) for i, spec in enumerate(specs)]


def errors_of(results: list[dict[str, Any]]) -> list[str]:
    return [e for r in results for e in r.get("errors", [])][:5]
