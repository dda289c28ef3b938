"""The limit of the engine cluster endpoints drive: GlobusComputeEngine + a provider, no fxgate.

fxgate's cluster endpoints hand tasks to globus-compute-endpoint's
GlobusComputeEngine (Parsl's HighThroughputExecutor) and a Parsl provider;
their goals are stated against that engine driven directly, as an endpoint
drives it. This is that baseline, in one process with nothing in between:
messagepack Tasks built with the SDK's serializer go to `engine.submit`, and
the endpoint's task futures yield packed Results, decoded here.

Measured, with trivial tasks (x + 1):
- start to first result: from building the engine until the first result
  (the interchange, the block and its workers all start in between);
- one at a time, warm workers: each task submitted after the previous result
  came back; p50/p90/p99 of submit-to-result;
- a burst of N: every task, packed beforehand, submitted at once; tasks per
  second from the first submit until the engine has delivered every result
  (decoding and checking follow, outside the clock).

LocalProvider (one block of workers on this machine) by default; `--slurm`
starts a private one-node Slurm cluster (tests/support/slurm.py, needs root
and slurm-wlm + munge) and runs the block there with Parsl's SlurmProvider.

Run:  python bench/cluster_direct.py [--slurm] [--tasks 2000] [--serial 200]
                                     [--workers N] [--out results.json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.metadata
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import machine  # noqa: E402
from tests.support import engine_direct as direct  # noqa: E402
from tests.support.slurm import SlurmCluster  # noqa: E402

RESULT_TIMEOUT_S = 600.0
PACKAGES = ("globus-compute-endpoint", "globus-compute-sdk", "parsl", "pyzmq")


def inc(x: int) -> int:
    return x + 1


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _first_result(engine: Any, began: float) -> float:
    if direct.result_of(direct.submit(engine, inc, 0), RESULT_TIMEOUT_S) != 1:
        raise SystemExit("wrong first result")
    return time.perf_counter() - began


def _one_at_a_time(engine: Any, count: int) -> list[float]:
    """Submit-to-result seconds of `count` tasks, each sent after the previous came back."""
    samples = []
    for i in range(count):
        t0 = time.perf_counter()
        value = direct.result_of(direct.submit(engine, inc, i), RESULT_TIMEOUT_S)
        samples.append(time.perf_counter() - t0)
        if value != i + 1:
            raise SystemExit(f"wrong result {value!r} for {i}")
    return samples


def _burst(engine: Any, count: int) -> dict[str, float]:
    """Submit `count` packed tasks at once; submit and completion rates, then check every value.

    Tasks are packed before the clock starts: an endpoint's engine receives them packed.
    """
    tasks = [direct.pack_task(inc, i) for i in range(count)]
    t0 = time.perf_counter()
    futures = [direct.submit_packed(engine, task_id, packed) for task_id, packed in tasks]
    submitted = time.perf_counter() - t0
    done, pending = concurrent.futures.wait(futures, timeout=RESULT_TIMEOUT_S)
    elapsed = time.perf_counter() - t0
    if pending:
        raise SystemExit(f"{len(pending)} of {count} burst tasks unfinished after the timeout")
    wrong = [i for i, f in enumerate(futures) if direct.result_of(f) != i + 1]
    if wrong:
        raise SystemExit(f"{len(wrong)} wrong burst results, first at {wrong[0]}")
    return {
        "tasks": count,
        "submit_s": submitted,
        "seconds": elapsed,
        "tasks_per_s": count / elapsed,
        "submit_per_s": count / submitted,
    }


def measure(
    make_provider: Callable[[], Any],
    run_dir: Path,
    env: Mapping[str, str],
    *,
    burst: int,
    serial: int,
    warmup: int,
    engine_kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    """Every number of one run against one engine (started here and shut down at the end)."""
    began = time.perf_counter()
    with direct.running_engine(make_provider, run_dir, env=env, **engine_kwargs) as engine:
        started = time.perf_counter() - began
        first = _first_result(engine, began)
        _burst(engine, warmup)  # every worker up and has run a task
        latencies = _one_at_a_time(engine, serial)
        rates = _burst(engine, burst)
        blocks = direct.block_job_ids(engine)
    return {
        "engine_start_s": started,
        "first_result_s": first,
        "serial": {
            "tasks": serial,
            "p50_ms": statistics.median(latencies) * 1e3,
            "p90_ms": _percentile(latencies, 0.9) * 1e3,
            "p99_ms": _percentile(latencies, 0.99) * 1e3,
            "samples_ms": [x * 1e3 for x in latencies],
        },
        "burst": rates,
        "blocks": blocks,
    }


@contextmanager
def _stage(use_slurm: bool) -> Iterator[tuple[Callable[[], Any], dict[str, str], str]]:
    """(provider factory, environment, provider name) for LocalProvider or a private Slurm."""
    if not use_slurm:
        yield direct.local_provider, direct.engine_env(), "LocalProvider"
        return
    with SlurmCluster() as cluster:
        yield (
            lambda: direct.slurm_provider(cluster),
            direct.engine_env(cluster.env()),
            f"SlurmProvider (private one-node cluster, partition {cluster.partition})",
        )


def _table(report: dict[str, Any]) -> str:
    r = report["results"]
    s, b = r["serial"], r["burst"]
    rows = [
        ("engine start (interchange up)", f"{r['engine_start_s']:.1f} s"),
        ("start to first result", f"{r['first_result_s']:.1f} s"),
        (f"one at a time, warm workers, p50 ({s['tasks']} tasks)", f"{s['p50_ms']:.1f} ms"),
        ("one at a time, p90 / p99", f"{s['p90_ms']:.1f} / {s['p99_ms']:.1f} ms"),
        (f"burst of {b['tasks']}: throughput", f"{b['tasks_per_s']:.0f} tasks/s"),
        ("burst: submit rate (engine.submit)", f"{b['submit_per_s']:.0f} tasks/s"),
    ]
    head = (
        f"GlobusComputeEngine direct, {report['provider']}, "
        f"max_workers_per_node={report['settings']['workers'] or 'default'}"
    )
    m = report["machine"]
    lines = [
        f"{m['cores']} cores ({m['cpu']}), load average at start {m['load_avg']}, "
        f"CPU {m['cpu_busy_before_pct']:.0f}% busy in the second before; "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
        f"| {head} | |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--slurm", action="store_true", help="run the block on a private Slurm")
    ap.add_argument("--tasks", type=int, default=2000, help="burst size")
    ap.add_argument("--serial", type=int, default=200, help="one-at-a-time tasks")
    ap.add_argument("--warmup", type=int, default=100, help="tasks before measuring")
    ap.add_argument("--workers", type=int, default=0, help="max_workers_per_node (0: default)")
    ap.add_argument("--out", type=Path, help="write every number as JSON here")
    args = ap.parse_args()
    engine_kwargs: dict[str, Any] = {"job_status_kwargs": {"strategy_period": 1}}
    if args.workers:
        engine_kwargs["max_workers_per_node"] = args.workers
    mach = machine()
    with tempfile.TemporaryDirectory(prefix="fxbench-direct-") as tmp, _stage(args.slurm) as stage:
        make_provider, env, provider_name = stage
        results = measure(
            make_provider,
            Path(tmp),
            env,
            burst=args.tasks,
            serial=args.serial,
            warmup=args.warmup,
            engine_kwargs=engine_kwargs,
        )
    report = {
        "command": " ".join(sys.argv),
        "provider": provider_name,
        "settings": vars(args) | {"out": str(args.out) if args.out else None},
        "machine": mach,
        "versions": {name: importlib.metadata.version(name) for name in PACKAGES},
        "results": results,
    }
    print(_table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
