"""Trivial tasks through a cluster endpoint (Globus Compute's engine, Parsl's LocalProvider)
against fxgate's local pool, side by side in one daemon, as a table.

Both endpoints get the same 2 workers on this machine. Throughput: a burst of
--burst tasks submitted at once, first submit to last result. Latency: --serial
tasks one at a time with warm workers, submit to result. The last row is the
same engine and provider driven directly, without fxgate (bench/cluster_direct.py):
the engine's own limit, measured in the same run after the daemon stopped.

CPU: what the daemon, the engine child and the client script spend per task
during the burst, read from /proc: the daemon's share is the price of
durability (every task committed when accepted and when finished) and of
serving it over gRPC; the engine child's is mostly the engine's own submit path.

Run:  PYTHONPATH=. python bench/cluster.py [--burst 2000] [--serial 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from client import Executor
from tests.daemon import DaemonProcess

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
[cluster.bench]
engine = "GlobusComputeEngine"
max_workers_per_node = 2
address = "127.0.0.1"
[cluster.bench.provider]
type = "LocalProvider"
init_blocks = 1
min_blocks = 0
max_blocks = 1
"""


def noop(x: int) -> int:
    return x


def burst(ex: Executor, n: int) -> float:
    """Tasks per second for n tasks submitted at once."""
    t0 = time.perf_counter()
    futures = [ex.submit(noop, i) for i in range(n)]
    for f in futures:
        f.result(timeout=600)
    return n / (time.perf_counter() - t0)


def serial(ex: Executor, n: int) -> list[float]:
    """Milliseconds from submit to result, one task at a time."""
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        ex.submit(noop, i).result(timeout=120)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def engine_child_pid(daemon_pid: int) -> int | None:
    """The daemon's engine child (the only child running engine_child), if one runs."""
    for task in Path(f"/proc/{daemon_pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            if b"engine_child" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
    return None


def measure(
    endpoint: str, n_burst: int, n_serial: int, watch: dict[str, int]
) -> tuple[tuple[float, float, float, float], dict[str, float]]:
    """(seconds to the first result, tasks/s, p50 ms, p90 ms) on one endpoint, and the CPU ms
    per task each watched process (and this client) used during the burst."""
    with Executor(endpoint_id=endpoint) as ex:
        t0 = time.perf_counter()
        ex.submit(noop, 0).result(timeout=300)  # workers start: not counted below
        first = time.perf_counter() - t0
        burst(ex, min(200, n_burst))  # warm
        pids = watch | {"client": os.getpid()}
        before = {name: cpu_s(pid) for name, pid in pids.items()}
        rate = burst(ex, n_burst)
        cpu = {name: (cpu_s(pid) - before[name]) * 1000 / n_burst for name, pid in pids.items()}
        lat = serial(ex, n_serial)
    q = statistics.quantiles(lat, n=10)
    return (first, rate, statistics.median(lat), q[8]), cpu


def _fresh(path: Path) -> Path:
    path.mkdir()
    return path


def _direct(tmp: Path, args: argparse.Namespace) -> tuple[float, float, float, float]:
    """The same engine and provider (2 workers) driven directly: the row fxgate is held to."""
    from bench.cluster_direct import measure as measure_direct
    from tests.support import engine_direct

    r = measure_direct(
        engine_direct.local_provider,
        _fresh(tmp / "direct"),
        engine_direct.engine_env(),
        burst=args.burst,
        serial=args.serial,
        warmup=min(200, args.burst),
        engine_kwargs={"max_workers_per_node": 2, "job_status_kwargs": {"strategy_period": 1}},
    )
    s = r["serial"]
    return r["first_result_s"], r["burst"]["tasks_per_s"], s["p50_ms"], s["p90_ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--burst", type=int, default=2000)
    ap.add_argument("--serial", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fxgate-bench-cluster-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        (state / "config.toml").write_text(CONFIG)
        daemon = DaemonProcess(state, workers=2)
        daemon.start(timeout=180)

        os.environ["FXGATE_ADDRESS"] = daemon.address
        assert daemon.proc is not None
        try:
            local, local_cpu = measure(
                "local", args.burst, args.serial, {"daemon": daemon.proc.pid}
            )
            child = engine_child_pid(daemon.proc.pid)
            assert child is not None, "no engine child"
            cluster, cluster_cpu = measure(
                "bench", args.burst, args.serial, {"daemon": daemon.proc.pid, "engine child": child}
            )
        finally:
            daemon.stop()
        rows = [
            ("fxgate local pool (2 workers)", local),
            ("fxgate cluster endpoint (HTEX, LocalProvider, 2 workers)", cluster),
        ]
        rows.append(("same engine + provider driven directly", _direct(Path(tmp), args)))
    print(
        f"| trivial tasks | first result s | burst of {args.burst:,}: tasks/s "
        f"| p50 ms ({args.serial} serial) | p90 ms |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, (first, rate, p50, p90) in rows:
        print(f"| {name} | {first:.1f} | {rate:,.0f} | {p50:.1f} | {p90:.1f} |")
    fx, eng = rows[1][1][1], rows[2][1][1]
    print(f"\nfxgate's cluster endpoint: {fx / eng:.2f}x the direct engine's throughput")
    for name, cpu in (("local pool", local_cpu), ("cluster endpoint", cluster_cpu)):
        shown = ", ".join(f"{who} {ms:.2f}" for who, ms in cpu.items())
        print(f"CPU ms per task in the burst, {name}: {shown}")


if __name__ == "__main__":
    main()
