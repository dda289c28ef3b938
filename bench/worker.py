"""One client script of the benchmark, as a user would run it: fxgate's or the SDK's Executor.

Every measured client runs in its own process, so the fake web service, the
publisher and the orchestrator never share its GIL, and its memory is its own.
It imports only what its kind needs (an fxgate client never loads the SDK).

Roles (spec as one JSON argument; results as JSON to spec["out"]):
  run     submit double(base + i) for i < n, wait until all n are accepted
          (fxgate: durably by the daemon; SDK: by the web service), then, unless
          wait is false, wait for every future and check every value
  reload  a new process re-attaches with reload_tasks(group) and waits for all
          futures; checks the values are exactly {2 * (base + i)}

Clocks: time.time() everywhere (one machine, one clock); a future's done time
is taken in its done callback, i.e. when the client library resolved it.

Run: python -m bench.worker '{"role": "run", "kind": "fxgate", ...}'
"""

from __future__ import annotations

import time

T_BOOT = time.time()

import concurrent.futures  # noqa: E402 - T_BOOT first: the process start as seen here
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

Spec = dict[str, Any]


def double(x: int) -> int:
    """The task; it never runs here (the fake only records it), its result is published."""
    return 2 * x


def make_executor(spec: Spec, group: str | None = None) -> Any:
    if spec["kind"] == "fxgate":
        from client import Executor

        return Executor(endpoint_id=spec["endpoint_id"], address=spec["address"])
    from types import SimpleNamespace
    from typing import cast

    from globus_compute_sdk import Executor as SdkExecutor

    from tests.support.fake_globus import FakeGlobus, sdk_client

    fake = cast(FakeGlobus, SimpleNamespace(base_url=spec["base_url"], token=spec["token"]))
    return SdkExecutor(
        endpoint_id=spec["endpoint_id"], client=sdk_client(fake), task_group_id=group
    )


def cpu_s() -> float:
    """CPU seconds (user + system, all threads) this process used so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _wait_accepted(ex: Any, n: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while ex.task_count_submitted < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {ex.task_count_submitted} of {n} tasks accepted")
        time.sleep(0.001)
    return time.time()


def _check(futures: list[Any], timeout: float) -> tuple[list[Any], list[str]]:
    """Values in future order, and what went wrong (empty when every value is expected)."""
    _, not_done = concurrent.futures.wait(futures, timeout=timeout)
    errors = [f"{len(not_done)} futures not done after {timeout} s"] if not_done else []
    values: list[Any] = []
    for f in futures:
        if not f.done():
            values.append(None)
        elif f.exception() is not None:
            values.append(None)
            errors.append(f"task failed: {f.exception()!r}"[:300])
        else:
            values.append(f.result())
    return values, errors


def run(spec: Spec) -> Spec:
    n, base, timeout = spec["n"], spec["base"], spec.get("timeout", 900)
    ex = make_executor(spec)
    done = [0.0] * n

    def mark(i: int) -> Any:
        return lambda _f: done.__setitem__(i, time.time())

    t_ready = time.time()
    futures = []
    for i in range(n):
        fut = ex.submit(double, base + i)
        fut.add_done_callback(mark(i))
        futures.append(fut)
    t_queued = time.time()
    t_accepted = _wait_accepted(ex, n, timeout)
    out: Spec = {
        "cpu_accepted": cpu_s(),
        "t_ready": t_ready,
        "t_queued": t_queued,
        "t_accepted": t_accepted,
        "group": str(ex.task_group_id),
    }
    if not spec.get("wait", True):
        return out | {"correct": True, "errors": []}
    values, errors = _check(futures, timeout)
    wrong = sum(1 for i, v in enumerate(values) if v != 2 * (base + i))
    if wrong and not errors:
        errors.append(f"{wrong} of {n} values wrong")
    return out | {
        "done": done,
        "t_last_done": max(done),
        "correct": not errors and not wrong,
        "errors": errors[:5],
    }


def reload(spec: Spec) -> Spec:
    n, base, timeout = spec["n"], spec["base"], spec.get("timeout", 900)
    ex = make_executor(spec, group=spec["group"])
    done: list[float] = []
    t_ready = time.time()
    futures = list(ex.reload_tasks(spec["group"]))
    t_futures = time.time()
    for fut in futures:
        fut.add_done_callback(lambda _f: done.append(time.time()))
    values, errors = _check(futures, timeout)
    if len(futures) != n:
        errors.append(f"reload_tasks gave {len(futures)} futures, expected {n}")
    if not errors and sorted(values) != [2 * (base + i) for i in range(n)]:
        errors.append("values differ from the published results")
    return {
        "t_ready": t_ready,
        "t_futures": t_futures,
        "t_last_done": max(done, default=t_futures),
        "count": len(futures),
        "correct": not errors,
        "errors": errors[:5],
    }


def main() -> None:
    spec: Spec = json.loads(sys.argv[1])
    try:
        out = {"run": run, "reload": reload}[spec["role"]](spec)
    except Exception as exc:  # noqa: BLE001 - reported to the orchestrator as a failure
        out = {"correct": False, "errors": [f"{type(exc).__name__}: {exc}"[:500]]}
    out |= {"t_boot": T_BOOT, "pid": os.getpid(), "kind": spec["kind"], "role": spec["role"]}
    out["cpu_end"] = cpu_s()
    Path(spec["out"]).write_text(json.dumps(out))
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave at once: an SDK result watcher or a gRPC stream must not stretch the wall time.
    os._exit(0)


if __name__ == "__main__":
    main()
