"""The daemon's RSS under the loads that once grew it without bound, as a table.

Scenarios (each on a fresh daemon with two local workers):
- results: N results of 4 KB (100,000 by default) committed while a watch
  stream reads them, with and without a second stream that reads nothing
  until the end; RSS idle, after the last result, and after the stalled
  stream was read to the end (every event once, in seq order, is checked).
- payloads: 70 tasks of 8.8 MB queued behind workers kept busy (a lock file),
  RSS once all are accepted and again after a restart.
- million: 1,000,000 small tasks queued behind busy workers, RSS once all
  are accepted and again after a restart.

Submits go over a raw gRPC stub, so the measuring process stays small.

Run: .venv/bin/python bench/memory.py [--only results,payloads,million] [--results 100000]
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse  # noqa: E402
import fcntl  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fxgate_contract._proto import gateway_pb2 as pb  # noqa: E402
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc  # noqa: E402
from fxgate_contract.serialize import pack_function, pack_payload  # noqa: E402
from tests.daemon import DaemonProcess  # noqa: E402

MB = 1024 * 1024


def four_kb(n: int) -> str:
    return f"{n:08d}".ljust(4096, "x")


def hold(lock_path: str, blob: str) -> int:
    import fcntl

    with open(lock_path) as f:
        fcntl.flock(f, fcntl.LOCK_SH)
    return len(blob)


def proc_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key}")


class Daemon:
    """A daemon, a raw stub to it, and the readings of its memory."""

    def __init__(self, state: Path) -> None:
        self.d = DaemonProcess(state)
        self.d.start()
        self.stub = self._stub()

    def _stub(self) -> pb_grpc.GatewayStub:
        options = [("grpc.max_send_message_length", 64 * MB)]
        options.append(("grpc.max_receive_message_length", 64 * MB))
        return pb_grpc.GatewayStub(grpc.insecure_channel(self.d.address, options=options))

    @property
    def pid(self) -> int:
        assert self.d.proc is not None
        return self.d.proc.pid

    def rss(self) -> float:
        return proc_mb(self.pid, "VmRSS")

    def register(self, fn: Callable[..., Any]) -> str:
        request = pb.RegisterFunctionRequest(
            function_name=fn.__name__, function_code=pack_function(fn)
        )
        return str(self.stub.RegisterFunction(request).function_id)

    def submit(self, group: str, fid: str, payloads: list[str]) -> None:
        tasks = [pb.TaskSpec(function_id=fid, payload=p) for p in payloads]
        self.stub.Submit(
            pb.SubmitRequest(task_group_id=group, endpoint_id="local", tasks=tasks),
            timeout=600,
        )

    def local_line(self) -> str:
        return str(self.stub.Status(pb.StatusRequest()).upstream_status["local"])

    def wait_local(self, want: str, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while want not in self.local_line():
            if time.monotonic() > deadline:
                raise RuntimeError(f"local upstream: {self.local_line()}; expected {want}")
            time.sleep(0.2)

    def restart(self) -> None:
        self.d.stop(timeout=900)
        self.d.start(timeout=900)  # resuming a million queued tasks takes minutes
        self.stub = self._stub()


def read_events(stream: Iterator[pb.WatchResponse], count: int) -> list[int]:
    seqs: list[int] = []
    while len(seqs) < count:
        seqs += [e.seq for e in next(stream).events if e.seq]  # seq 0: RUNNING, not a result
    return seqs


def results_row(tmp: Path, n: int, stalled: bool) -> list[str]:
    d = Daemon(tmp / f"results-{stalled}")
    try:
        fid = d.register(four_kb)
        group = str(uuid.uuid4())
        d.submit(group, fid, [pack_payload((0,), {})])
        reader = d.stub.Watch(pb.WatchRequest(task_group_id=group))
        assert read_events(reader, 1) == [1]
        stuck = None
        if stalled:
            stuck = d.stub.Watch(pb.WatchRequest(task_group_id=group))
            assert read_events(stuck, 1) == [1]  # subscribed; unread from here on
        idle = d.rss()
        seen: list[int] = []
        done = threading.Thread(target=lambda: seen.extend(read_events(reader, n)))
        done.start()
        for i in range(1, n + 1, 1000):
            d.submit(group, fid, [pack_payload((k,), {}) for k in range(i, min(i + 1000, n + 1))])
        done.join()
        after = d.rss()
        assert seen == list(range(2, n + 2)), "the reading stream missed or repeated events"
        drained = "-"
        if stuck is not None:
            assert read_events(stuck, n) == list(range(2, n + 2)), "the stalled stream lost events"
            drained = f"{d.rss():.0f}"
        peak = proc_mb(d.pid, "VmHWM")
        label = f"{n:,} results of 4 KB, " + (
            "a stalled stream" if stalled else "no stalled stream"
        )
        return [label, f"{idle:.0f}", f"{after:.0f}", drained, f"{peak:.0f}"]
    finally:
        d.d.stop(timeout=900)


@contextmanager
def busy_workers(tmp: Path) -> Iterator[str]:
    """A lock file every `hold` task waits on while this holds it."""
    path = tmp / "lock"
    path.write_text("")
    with open(path) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield str(path)


def queued_row(tmp: Path, label: str, count: int, chars: int, per_call: int) -> list[str]:
    d = Daemon(tmp / f"queued-{count}")
    try:
        with busy_workers(tmp) as lock:
            fid = d.register(hold)
            group = str(uuid.uuid4())
            idle = d.rss()
            blob = "x" * chars
            for i in range(0, count, per_call):
                k = min(per_call, count - i)
                d.submit(group, fid, [pack_payload((lock, blob), {})] * k)
            d.wait_local(f"2 tasks at workers, {count - 2} queued")
            live = d.rss()
            d.restart()
            d.wait_local(f"2 tasks at workers, {count - 2} queued")
            restarted = d.rss()
            peak = proc_mb(d.pid, "VmHWM")
        return [label, f"{idle:.0f}", f"{live:.0f}", f"{restarted:.0f}", f"{peak:.0f}"]
    finally:
        d.d.stop(timeout=900)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="results,payloads,million")
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--queued", type=int, default=1_000_000, help="small tasks in 'million'")
    args = parser.parse_args()
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if "results" in only:
            rows = [results_row(tmp, args.results, s) for s in (False, True)]
            print(
                "| scenario | idle MB | after the results MB | stalled stream read MB | peak MB |"
            )
            print("|---|---:|---:|---:|---:|")
            for row in rows:
                print("| " + " | ".join(row) + " |")
            print()
        rows = []
        if "payloads" in only:
            rows.append(queued_row(tmp, "70 tasks of 8.8 MB queued", 70, 6_550_000, 1))
        if "million" in only:
            label = f"{args.queued:,} small tasks queued"
            rows.append(queued_row(tmp, label, args.queued, 10, 5000))
        if rows:
            print("| scenario | idle MB | all accepted MB | restarted MB | peak since restart MB |")
            print("|---|---:|---:|---:|---:|")
            for row in rows:
                print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
