"""Scenario (c), re-attach: N finished results wait; a new process calls reload_tasks().

fxgate: a script submits N tasks and exits as soon as the daemon durably
accepted them; the results are published and the daemon commits all N. Then a
new process calls reload_tasks(group) and waits for every future.

SDK: a script submits N tasks with the SDK Executor and exits once the web
service accepted them; the results are published into the group's queue, where
they wait as a backlog (the fake reports the tasks pending over HTTP, as the
web service does until it has the results). A new process builds an SDK
Executor for the group, calls reload_tasks() (task list and status over
HTTP, then the AMQP watcher drains the backlog) and waits for every future.

Measured inside the new process, from the reload_tasks() call to the last
future done; the process's own spawn-to-exit wall time is shown beside it.
"""

from __future__ import annotations

import time
from typing import Any

from bench.env import BenchEnv
from bench.flows import NAN, rate
from bench.plan import publish, result_lines
from bench.report import Outcome, Row, ratio
from bench.sizes import Scale
from client import Client
from tests.daemon import DaemonProcess

GOAL_S = 4.0


def _wait_stored(daemon: DaemonProcess, n: int, timeout: float = 900) -> None:
    """Setup only: poll the daemon until n results are committed."""
    deadline = time.monotonic() + timeout
    with Client(address=daemon.address) as c:
        while c.status()["tasks"].get("SUCCESS", 0) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"daemon did not store {n} results in {timeout} s")
            time.sleep(0.2)


def _reattach(env: BenchEnv, kind: str, n: int) -> dict[str, Any]:
    daemon = env.daemon("c-daemon") if kind == "fxgate" else None
    since = env.mark()
    spec = env.client_spec(kind, daemon, role="run", n=n, base=0, wait=False)
    submitted = env.collect(env.start_worker(f"c-{kind}-submit", spec))
    if not submitted.get("correct"):
        raise RuntimeError(f"c: {kind} submit failed: {submitted.get('errors')}")
    tasks = env.await_tasks(since, n)
    publish(env, f"c-{kind}-publisher", result_lines(env, tasks))
    if daemon is not None:
        _wait_stored(daemon, n)
    spec = env.client_spec(kind, daemon, role="reload", n=n, base=0, group=submitted["group"])
    spawned = time.time()
    out = env.collect(env.start_worker(f"c-{kind}-reload", spec))
    exited = time.time()
    if daemon is not None:
        env.stop_daemon(daemon)
    last = out.get("t_last_done")
    return {
        "seconds": last - out["t_ready"] if last else NAN,
        "process_s": exited - spawned,
        "rate": rate(n, out.get("t_ready"), last),
        "correct": bool(out.get("correct")),
        "errors": out.get("errors", []),
    }


def run(env: BenchEnv, scale: Scale) -> Outcome:
    n = scale.reattach_tasks
    fx, sdk = _reattach(env, "fxgate", n), _reattach(env, "sdk", n)
    rows = [
        Row(
            f"s, reload_tasks() → all {n:,} futures done (new process)",
            fx["seconds"],
            sdk["seconds"],
            ratio=ratio(fx["seconds"], sdk["seconds"]) + " SDK",
            goal=f"≤ {GOAL_S:g} s for 100,000",
            met=fx["seconds"] <= GOAL_S,
        ),
        Row("results/s re-attached", fx["rate"], sdk["rate"], ratio=ratio(fx["rate"], sdk["rate"])),
        Row(
            "s, spawn of that process → its exit (interpreter, imports included)",
            fx["process_s"],
            sdk["process_s"],
            ratio=ratio(fx["process_s"], sdk["process_s"]),
        ),
    ]
    correct = fx["correct"] and sdk["correct"]
    details: dict[str, Any] = {"fxgate": fx, "sdk": sdk, "tasks": n}
    if not correct:
        details["errors"] = fx["errors"] + sdk["errors"]
    notes = [
        "SDK: reload_tasks() first asks the web service for the group's task list and "
        "their status (batches of 128), then its AMQP watcher drains the queue backlog"
    ]
    return Outcome("c", "re-attach", rows, correct, details, notes)
