"""Where the daemon's CPU goes while a stream of results arrives (scenario a, fxgate only).

The goals of scenario a are bounded by the daemon's CPU cost per result, so
this measures that cost and splits it: a client submits N tasks, the fake
service accepts them, and from the first publish until the client has every
result, py-spy samples the daemon, counting only the thread that holds the
GIL (so a sample is Python work, never a wait). The report gives the
daemon's CPU seconds per result, each thread's share, the share of each
library by the frame that was running (pika, SQL, gRPC, JSON, fxgate's own
code), and the costliest functions. The raw samples (collapsed stacks, for
a flamegraph) are saved beside the report.

Run: python bench/profile_stream.py [--tasks 20000] [--out bench/results]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.env import BenchEnv  # noqa: E402
from bench.plan import publish, result_lines  # noqa: E402
from bench.procs import cpu_s  # noqa: E402

RATE_HZ = 500
# Library of a sample, by the top package of the frame that was running
# (py-spy names a frame "function (package/module.py:line)").
PARTS = {
    "pika": "pika",
    "sqlalchemy": "SQL (SQLAlchemy, sqlite3)",
    "sqlite3": "SQL (SQLAlchemy, sqlite3)",
    "grpc": "gRPC",
    "google": "protobuf",
    "json": "JSON",
    "re": "regex",
    "uuid.py": "uuid",
    "gateway": "fxgate",
    "threading.py": "threads, queues, futures",
    "queue.py": "threads, queues, futures",
    "concurrent": "threads, queues, futures",
}


def _part(frame: str) -> str:
    path = frame.rpartition("(")[2]
    return PARTS.get(path.split("/")[0], "other")


def summarize(raw: Path, results: int, daemon_cpu_s: float) -> str:
    """A markdown summary of py-spy's collapsed stacks."""
    threads: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        threads[frames[0].rpartition("): ")[2] or frames[0]] += n
        parts[_part(frames[-1])] += n
        leaves[frames[-1]] += n
    per_result_us = daemon_cpu_s / results * 1e6
    out = [
        f"daemon CPU from first publish to last result: {daemon_cpu_s:.2f} s for "
        f"{results:,} results = {per_result_us:.0f} µs a result; {total:,} samples "
        f"at {RATE_HZ} Hz of the thread holding the GIL",
        "",
        "| thread | share |",
        "|---|---:|",
        *(f"| {name} | {n / total:.0%} |" for name, n in threads.most_common(8)),
        "",
        "| running in | share |",
        "|---|---:|",
        *(f"| {name} | {n / total:.0%} |" for name, n in parts.most_common()),
        "",
        "| function (self) | share |",
        "|---|---:|",
        *(f"| `{name}` | {n / total:.1%} |" for name, n in leaves.most_common(15)),
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/profile_stream.py", description=__doc__)
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    date = datetime.now().strftime("%Y-%m-%d")
    raw = args.out / f"profile-stream-{date}.txt"
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="fxprofile-"))
    try:
        with BenchEnv(workdir) as env:
            daemon = env.daemon("profile-daemon")
            assert daemon.proc is not None
            since = env.mark()
            spec = env.client_spec("fxgate", daemon, role="run", n=args.tasks, base=0)
            worker = env.start_worker("profile-client", spec)
            tasks = env.await_tasks(since, args.tasks, [worker])
            env.wait_consumers({env.fake.queue_name(t.task_group_id) for t in tasks})
            before = cpu_s(daemon.proc.pid)
            sampler = subprocess.Popen(
                [spy, "record", "--pid", str(daemon.proc.pid), "--gil", "--threads"]
                + ["--rate", str(RATE_HZ), "--format", "raw", "--output", str(raw)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            publish(env, "profile-publisher", result_lines(env, tasks))
            out = env.collect(worker)
            spent = cpu_s(daemon.proc.pid) - before
            sampler.send_signal(signal.SIGINT)  # py-spy writes its samples and exits
            sampler.wait(timeout=60)
            env.stop_daemon(daemon)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not out.get("correct"):
        print(f"the client saw wrong results: {out.get('errors')}", file=sys.stderr)
        return 1
    report = summarize(raw, args.tasks, spent)
    path = raw.with_suffix(".md")
    path.write_text(f"# Daemon profile, scenario a ({date})\n\n" + report)
    print(report)
    print(f"saved {path} and the raw samples {raw.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
