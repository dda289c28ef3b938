"""Where the daemon's CPU goes while a stream of results arrives (scenario a, fxgate only).

The goals of scenario a are bounded by the daemon's CPU cost per result, so
this measures that cost and splits it: a client submits N tasks, the fake
service accepts them, and from the first publish until the client has every
result the daemon is measured twice over. Exactly: each thread's CPU time
from /proc (threads named by `py-spy dump`). By sampling: py-spy records the
thread that holds the GIL, which splits the Python work by the library whose
frame was running (pika, SQL, gRPC, JSON, fxgate's own code) and by function;
approximate, as a thread blocked in C with the GIL released can still count
as its holder. The raw samples (collapsed stacks, for a flamegraph)
are saved beside the report.

Run: python bench/profile_stream.py [--tasks 20000] [--out bench/results]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
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


def thread_names(spy: str, pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name, from `py-spy dump`."""
    dump = subprocess.run(
        [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, check=True
    ).stdout
    return {int(m[1]): m[2] for m in re.finditer(r'^Thread (\d+) \(\w+\): "([^"]*)"', dump, re.M)}


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of a process so far."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _function(frame: str) -> str:
    """A py-spy frame without its line number: `function (package/module.py)`."""
    return frame.rpartition(":")[0] + ")" if frame.endswith(")") else frame


def summarize(raw: Path, results: int, by_thread: dict[str, float]) -> str:
    """A markdown summary: exact CPU by thread, then py-spy's samples by library and function."""
    parts: collections.Counter[str] = collections.Counter()
    functions: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        parts[_part(frames[-1])] += n
        functions[_function(frames[-1])] += n
    spent = sum(by_thread.values())
    out = [
        f"daemon CPU from first publish to last result: {spent:.2f} s for {results:,} results "
        f"= {spent / results * 1e6:.0f} µs a result",
        "",
        "| thread | CPU s | µs a result |",
        "|---|---:|---:|",
        *(
            f"| {name} | {s:.3f} | {s / results * 1e6:.1f} |"
            for name, s in sorted(by_thread.items(), key=lambda kv: -kv[1])
            if s > 0
        ),
        "",
        f"py-spy: {total:,} samples at {RATE_HZ} Hz of the thread holding the GIL",
        "",
        "| running in | share |",
        "|---|---:|",
        *(f"| {name} | {n / total:.0%} |" for name, n in parts.most_common()),
        "",
        "| function (self) | share |",
        "|---|---:|",
        *(f"| `{name}` | {n / total:.1%} |" for name, n in functions.most_common(15)),
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
            pid = daemon.proc.pid
            names = thread_names(spy, pid)
            before = thread_cpu(pid)
            sampler = subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--gil", "--threads", "--rate", str(RATE_HZ)]
                + ["--format", "raw", "--output", str(raw)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            publish(env, "profile-publisher", result_lines(env, tasks))
            out = env.collect(worker)
            after = thread_cpu(pid)
            sampler.send_signal(signal.SIGINT)  # py-spy writes its samples and exits
            sampler.wait(timeout=60)
            env.stop_daemon(daemon)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not out.get("correct"):
        print(f"the client saw wrong results: {out.get('errors')}", file=sys.stderr)
        return 1
    by_thread: dict[str, float] = collections.defaultdict(float)
    for tid, seconds in after.items():
        by_thread[names.get(tid, "threads started later")] += seconds - before.get(tid, 0.0)
    report = summarize(raw, args.tasks, by_thread)
    path = raw.with_suffix(".md")
    path.write_text(f"# Daemon profile, scenario a ({date})\n\n" + report)
    print(report)
    print(f"saved {path} and the raw samples {raw.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
