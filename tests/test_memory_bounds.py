"""The daemon's memory stays bounded whatever its clients read and however much is queued.

Real daemons, real workers, a raw watch stream over the real socket. RSS is
read from /proc/<pid>/status: a measurement against a generous bound, never a
timing. The bounds are far below what the unbounded daemon reached in the
same scenario (named at each assert), and far above what a bounded one needs.
"""

from __future__ import annotations

import fcntl
import time
import uuid
from collections import Counter
from pathlib import Path

import grpc

from client import Client, Executor
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from fxgate_contract.states import TaskState
from gateway.store.database import Store
from gateway.store.records import Completion, GroupInfo, NewTask, PendingTask
from gateway.upstreams.base import PayloadBudget, with_payloads
from tests.daemon import DaemonProcess
from tests.support.fake_globus import FakeGlobus
from tests.support.fixtures import fake_globus, rabbit  # noqa: F401

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
        results = [e for e in message.events if e.seq]  # seq 0: RUNNING, finishes nothing
        seqs += [e.seq for e in results]
        assert all(e.data for e in results)
    stream.cancel()
    channel.close()
    assert seqs == list(range(2, RESULTS + 2))  # every result once, in commit order
    # This load costs the daemon about +62 MB with no watcher, +80 MB with the
    # stalled one (its bounded buffer, the page it holds, gRPC's send buffers);
    # unbounded, the stalled stream held every result: +233 MB.
    assert stalled - before < 140, f"RSS {before:.0f} -> {stalled:.0f} MB"


QUEUED = 30
PAYLOAD_CHARS = 6_000_000  # a payload of 8.1 MB, packed


def hold(lock_path: str, blob: str) -> str:
    """Waits while the test holds the lock file, then answers with the blob's head and size."""
    import fcntl

    with open(lock_path) as f:
        fcntl.flock(f, fcntl.LOCK_SH)
    return f"{blob[:8]}:{len(blob)}"


def wait_until_running(client: Client, running: int, queued: int, timeout: float = 60) -> None:
    want = f"{running} tasks at workers, {queued} queued"
    deadline = time.monotonic() + timeout
    while want not in (seen := client.status()["upstream_status"]["local"]):
        assert time.monotonic() < deadline, f"local upstream: {seen}; expected {want}"
        time.sleep(0.05)


def test_queued_payloads_beyond_the_budget_stay_in_the_store_also_after_a_restart(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    lock_path = tmp_path / "lock"
    lock_path.write_text("")
    with open(lock_path) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # every task waits on it: the workers stay busy
        ex = Executor(endpoint_id="local", address=daemon.address)
        futures = [
            ex.submit(hold, str(lock_path), f"{n:08d}".ljust(PAYLOAD_CHARS, "x"))
            for n in range(QUEUED)
        ]
        assert daemon.proc is not None
        with Client(address=daemon.address) as client:
            wait_until_running(client, 2, QUEUED - 2)
        live = rss_mb(daemon.proc.pid)
        assert daemon.stop() == 0
        daemon.start()  # the executor reconnects by itself
        with Client(address=daemon.address) as client:
            wait_until_running(client, 2, QUEUED - 2)
        restarted = rss_mb(daemon.proc.pid)
        print(
            f"daemon RSS with {QUEUED} queued payloads of 8 MB: {live:.0f} MB, "
            f"after a restart {restarted:.0f} MB"
        )
        fcntl.flock(lock, fcntl.LOCK_UN)
    results = [f.result(timeout=120) for f in futures]
    ex.shutdown()
    assert results == [f"{n:08d}:{PAYLOAD_CHARS}" for n in range(QUEUED)]
    # 30 payloads of 8 MB: unbounded, the queue held them all, 404 MB live and
    # 310 MB after a restart (which loaded every one). Bounded: 172-230 MB live
    # and 61-100 MB after a restart (an idle daemon: 61 MB); the spread is what
    # glibc keeps of freed request and send buffers, not payloads held.
    assert live < 300 and restarted < 160, (live, restarted)


def size_of(blob: str) -> str:
    return f"{blob[:8]}:{len(blob)}"


def test_globus_tasks_queued_at_a_restart_are_sent_from_the_store_each_once(
    tmp_path: Path,
    fake_globus: FakeGlobus,  # noqa: F811
) -> None:
    """The service is down: tasks wait; after a restart they go out with payloads read then."""
    count = 10
    d = DaemonProcess(
        tmp_path / "state",
        extra_env=fake_globus.daemon_env(),
    )
    d.start()
    try:
        assert d.proc is not None
        idle = rss_mb(d.proc.pid)
        fake_globus.set_down(True)
        ex = Executor(endpoint_id=fake_globus.endpoint_id, address=d.address)
        futures = [ex.submit(size_of, f"{n:08d}".ljust(PAYLOAD_CHARS, "x")) for n in range(count)]
        deadline = time.monotonic() + 60
        while ex.task_count_submitted < count:  # durably accepted, not yet at the service
            assert time.monotonic() < deadline, f"{ex.task_count_submitted} accepted"
            time.sleep(0.05)
        assert d.stop() == 0
        d.start()
        restarted = rss_mb(d.proc.pid)
        print(f"globus daemon RSS idle {idle:.0f} MB, after the restart {restarted:.0f} MB")
        fake_globus.set_down(False)
        results = [f.result(timeout=120) for f in futures]
        ex.shutdown()
    finally:
        fake_globus.set_down(False)
        assert d.stop() in (0, -9), d.log()
    assert results == [f"{n:08d}:{PAYLOAD_CHARS}" for n in range(count)]
    assert len(fake_globus.accepted) == count
    assert max(Counter(a.payload for a in fake_globus.accepted).values()) == 1
    # Unbounded, the restart loaded all ten payloads of 8 MB: +87 MB.
    assert restarted - idle < 40, f"RSS idle {idle:.0f} MB, after the restart {restarted:.0f} MB"


def test_a_queue_keeps_payloads_within_its_budget_and_skips_tasks_finished_meanwhile(
    tmp_path: Path,
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
    store.open()
    try:
        group = GroupInfo(str(uuid.uuid4()), "local", str(uuid.uuid4()), None)
        payloads = [f"{n}".ljust(1000, "p") for n in range(5)]
        new = [NewTask("f", p) for p in payloads]
        ids = store.accept(group, new, str(uuid.uuid4()), []).result()
        budget = PayloadBudget(limit=2500)
        queued = [
            budget.admit(PendingTask(t, group.id, group.endpoint_id, "f", p, ()))
            for t, p in zip(ids, payloads, strict=True)
        ]
        assert [t.payload is not None for t in queued] == [True, True, False, False, False]
        assert [t.size() for t in queued] == [1000] * 5 and budget.held == 2000
        # finished after it was queued (a result, or a cancel): its payload is gone
        store.complete([Completion(TaskState.CANCELLED, "", ids[3])]).result()
        ready = with_payloads(queued, store.payloads)
        assert [(t.task_id, p) for t, p in ready] == [(ids[n], payloads[n]) for n in (0, 1, 2, 4)]
        for t in queued:
            budget.release(t)
        assert budget.held == 0
    finally:
        store.close()
