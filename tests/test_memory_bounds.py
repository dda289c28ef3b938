"""The daemon's memory stays bounded whatever its clients read and however much is queued.

Real daemons, real workers, a raw watch stream over the real socket. RSS is
read from /proc/<pid>/status: a measurement against a generous bound, never a
timing. The bounds are far below what the unbounded daemon reached in the
same scenario (named at each assert), and far above what a bounded one needs.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from client import Executor
from client._proto import gateway_pb2 as pb
from client._proto import gateway_pb2_grpc as pb_grpc
from tests.daemon import DaemonProcess

MB = 1024 * 1024
RESULTS = 30_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


def four_kb(n: int) -> str:
    return f"{n:08d}".ljust(4096, "x")


def test_a_stalled_watch_stream_costs_bounded_memory_and_then_gets_every_event_once(
    daemon: DaemonProcess,
) -> None:
    assert daemon.proc is not None
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        assert ex.submit(four_kb, 0).result(timeout=60).startswith("00000000")
        group = ex.task_group_id
    channel = grpc.insecure_channel(
        daemon.address, options=[("grpc.max_receive_message_length", 64 * MB)]
    )
    stream = pb_grpc.GatewayStub(channel).Watch(pb.WatchRequest(task_group_id=group))
    first = next(stream)  # subscribed; from here on nobody reads this stream
    assert first.replay_done and [e.seq for e in first.events] == [1]
    before = rss_mb(daemon.proc.pid)

    with Executor(endpoint_id="local", address=daemon.address, task_group_id=group) as ex:
        futures = [ex.submit(four_kb, n) for n in range(1, RESULTS + 1)]
        assert all(f.result(timeout=120)[:8] == f"{n:08d}" for n, f in enumerate(futures, 1))
    stalled = rss_mb(daemon.proc.pid)
    print(f"daemon RSS with a stalled stream: {before:.0f} -> {stalled:.0f} MB")

    seqs: list[int] = []
    while len(seqs) < RESULTS:
        message = next(stream)
        seqs += [e.seq for e in message.events]
        assert all(e.data for e in message.events)
    stream.cancel()
    channel.close()
    assert seqs == list(range(2, RESULTS + 2))  # every result once, in commit order
    # This load costs the daemon about +62 MB with no watcher, +80 MB with the
    # stalled one (its bounded buffer, the page it holds, gRPC's send buffers);
    # unbounded, the stalled stream held every result: +233 MB.
    assert stalled - before < 140, f"RSS {before:.0f} -> {stalled:.0f} MB"
