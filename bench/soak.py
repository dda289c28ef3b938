"""Soak: mixed load on one daemon for a while; its RSS, open fds and threads must stay flat.

Each round: an Executor runs 5,000 small tasks and two with 4 MB payloads, a
watch stream is opened and left unread while they finish (then read to the
end: every event once, in order), another is opened and dropped at once, and
a few queued tasks are cancelled. After each round the daemon's VmRSS, open
file descriptors and threads are sampled. The table shows a sample per
--every rounds; the verdict compares the last third of the run with the first
(after one warm-up round).

Run: .venv/bin/python bench/soak.py [--minutes 3] [--rounds 100000] [--every 5]
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import grpc  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client import Client, Executor  # noqa: E402
from fxgate_contract._proto import gateway_pb2 as pb  # noqa: E402
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc  # noqa: E402
from tests.daemon import DaemonProcess  # noqa: E402

SMALL = 5000  # more than a watch buffer holds: the stalled stream falls behind
BIG_CHARS = 3_000_000  # a payload of about 4 MB, packed


def double(x: int) -> int:
    return x * 2


def size_of(blob: str) -> int:
    return len(blob)


def sample(pid: int) -> tuple[float, int, int]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    rss = int(status["VmRSS"].split()[0]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd")), int(status["Threads"])


def one_round(d: DaemonProcess, stub: pb_grpc.GatewayStub, client: Client) -> None:
    with Executor(endpoint_id="local", address=d.address) as ex:
        assert ex.submit(double, -1).result(timeout=120) == -2  # the group exists
        stalled = stub.Watch(pb.WatchRequest(task_group_id=ex.task_group_id))
        dropped = stub.Watch(pb.WatchRequest(task_group_id=ex.task_group_id))
        assert next(stalled).replay_done and next(dropped).replay_done
        dropped.cancel()
        futures = [ex.submit(double, i) for i in range(SMALL)]
        big = [ex.submit(size_of, "x" * BIG_CHARS) for _ in range(2)]
        extra = [ex.submit(double, i) for i in range(50)]
        ids = [f.task_id for f in extra if f.task_id]  # accepted so far
        if ids:
            client.cancel(ids)  # those not started yet
        assert [f.result(timeout=300) for f in futures] == [2 * i for i in range(SMALL)]
        assert [f.result(timeout=300) for f in big] == [BIG_CHARS, BIG_CHARS]
        for f in extra:
            f.exception(timeout=300)  # cancelled or run: either way finished
        expected = {f.task_id for f in futures + big + extra}
    seen: list[tuple[int, str]] = []
    while len(seen) < len(expected):
        seen += [(e.seq, e.task_id) for e in next(stalled).events if e.seq]  # not RUNNING
    stalled.cancel()
    seqs = [seq for seq, _ in seen]
    in_order = seqs == sorted(set(seqs))
    assert in_order and {t for _, t in seen} == expected, "the stalled stream lost or repeated"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=100_000, help="at most this many rounds")
    parser.add_argument("--every", type=int, default=5, help="print a sample every N rounds")
    args = parser.parse_args()
    deadline = time.monotonic() + args.minutes * 60
    samples: list[tuple[int, float, float, int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = DaemonProcess(Path(tmp) / "state")
        d.start()
        assert d.proc is not None
        channel = grpc.insecure_channel(d.address)
        stub = pb_grpc.GatewayStub(channel)
        began = time.monotonic()
        try:
            with Client(address=d.address) as client:
                rounds = 0
                while rounds < args.rounds and time.monotonic() < deadline:
                    one_round(d, stub, client)
                    rounds += 1
                    samples.append((rounds, time.monotonic() - began, *sample(d.proc.pid)))
        finally:
            channel.close()
            code = d.stop()
    print("| round | s | RSS MB | fds | threads |")
    print("|---:|---:|---:|---:|---:|")
    for n, t, rss, fds, threads in samples:
        if n == 1 or n % args.every == 0 or n == len(samples):
            print(f"| {n} | {t:.0f} | {rss:.0f} | {fds} | {threads} |")
    body = samples[1:] or samples
    third = max(1, len(body) // 3)
    first, last = body[:third], body[-third:]
    grew = max(s[2] for s in last) - max(s[2] for s in first)
    fds_grew = max(s[3] for s in last) - max(s[3] for s in first)
    threads_grew = max(s[4] for s in last) - max(s[4] for s in first)
    print(
        f"\n{len(samples)} rounds; from the first third to the last: peak RSS {grew:+.0f} MB, "
        f"fds {fds_grew:+d}, threads {threads_grew:+d}; daemon exit code {code}"
    )
    ok = code == 0 and grew < 20 and fds_grew <= 2 and threads_grew <= 2
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
