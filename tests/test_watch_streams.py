"""Open watch streams cost the daemon no thread each, and every one is served."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from client import Client, Executor
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from tests.daemon import DaemonProcess

STREAMS = 150


def double(x: int) -> int:
    return x * 2


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def wait_for_watchers(client: Client, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (seen := client.status()["watchers"]) != count:
        assert time.monotonic() < deadline, f"{seen} watchers, expected {count}"
        time.sleep(0.05)


def test_many_watch_streams_share_a_few_threads_and_all_get_every_event(
    daemon: DaemonProcess, client: Client
) -> None:
    assert daemon.proc is not None
    with Executor(endpoint_id="local", address=daemon.address) as ex:
        assert ex.submit(double, 1).result(timeout=60) == 2  # workers and group exist
        group = ex.task_group_id
    threads_before = threads_of(daemon.proc.pid)

    stub = pb_grpc.GatewayStub(grpc.insecure_channel(daemon.address))
    streams = [stub.Watch(pb.WatchRequest(task_group_id=group)) for _ in range(STREAMS)]
    for stream in streams:  # replay_done arrives after the stream subscribed
        first = next(stream)
        assert first.replay_done and [e.seq for e in first.events] == [1]
    wait_for_watchers(client, STREAMS)
    # the thread-per-call server needed one thread per stream here
    assert threads_of(daemon.proc.pid) < threads_before + 10

    with Executor(endpoint_id="local", address=daemon.address, task_group_id=group) as ex:
        assert ex.submit(double, 2).result(timeout=60) == 4
    for stream in streams:  # each live stream gets the new result, once
        live = next(stream)
        while not any(e.seq for e in live.events):  # RUNNING (seq 0) if it ran 20 ms
            live = next(stream)
        assert [e.seq for e in live.events if e.seq] == [2] and not live.replay_done

    for stream in streams:
        stream.cancel()
    wait_for_watchers(client, 0)  # a client going away unsubscribes its stream
