"""The systemd notify protocol, as systemd sees it: a real daemon and a real NOTIFY_SOCKET.

The test plays systemd: it opens the unix datagram socket, starts `fxgate
serve` with NOTIFY_SOCKET and WATCHDOG_USEC pointing at it, and reads the
messages. READY=1 must mean "answers calls"; WATCHDOG=1 must stop while the
store-writer is wedged (here by a real lock on the SQLite database, held
from this process with BEGIN EXCLUSIVE while a client sends writes) and
resume after; STOPPING=1 must come on SIGTERM.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from tests.daemon import DaemonProcess

TIMEOUT = 60
# 1 s: a ping every 0.5 s, and a writer stuck for 1 s counts as wedged.
WATCHDOG_USEC = 1_000_000


class NotifySocket:
    """The service manager's end: receives and parses sd_notify datagrams."""

    def __init__(self) -> None:
        # A short path: unix socket paths are limited to 107 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="fxn-", dir="/tmp"))
        self.path = self.dir / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(TIMEOUT)
        self.seen: list[dict[str, str]] = []

    def next(self, deadline: float | None = None) -> dict[str, str]:
        """The next message as KEY -> value (fails the test after TIMEOUT s of silence,
        or once past deadline, a time.monotonic() value)."""
        if deadline is not None and time.monotonic() > deadline:
            raise AssertionError(f"the awaited notify message did not come; seen: {self.seen}")
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            raise AssertionError(f"no notify message in {TIMEOUT} s; seen: {self.seen}") from None
        message = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.seen.append(message)
        return message

    def until(self, wanted: Callable[[dict[str, str]], bool]) -> list[dict[str, str]]:
        """Every message up to and including the first one `wanted` accepts."""
        got, deadline = [], time.monotonic() + TIMEOUT
        while True:
            message = self.next(deadline)
            got.append(message)
            if wanted(message):
                return got

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)
        self.dir.rmdir()


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    n = NotifySocket()
    yield n
    n.close()


@pytest.fixture
def supervised(tmp_path: Path, notify: NotifySocket) -> Iterator[DaemonProcess]:
    """A daemon started as systemd starts a Type=notify unit with WatchdogSec=1."""
    d = DaemonProcess(
        tmp_path / "state",
        extra_env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)},
    )
    d.spawn()
    yield d
    d.stop()


def answers_status(d: DaemonProcess) -> bool:
    """One Status call that does not wait for the server to appear."""
    with grpc.insecure_channel(d.address) as channel:
        stub = pb_grpc.GatewayStub(channel)  # type: ignore[no-untyped-call]
        stub.Status(pb.StatusRequest(), timeout=10, wait_for_ready=False)
    return True


def test_ready_means_serving_and_stopping_comes_with_sigterm(
    supervised: DaemonProcess, notify: NotifySocket
) -> None:
    before = notify.until(lambda m: "READY" in m)
    assert before[0].get("STATUS") == "starting", before
    assert before[-1]["READY"] == "1"
    assert before[-1]["STATUS"].startswith(f"serving on {supervised.address}"), before[-1]
    assert answers_status(supervised)  # at once, no retry: READY=1 came after the server started

    assert notify.until(lambda m: m.get("WATCHDOG") == "1")[-1] == {"WATCHDOG": "1"}

    assert supervised.proc is not None
    supervised.proc.send_signal(signal.SIGTERM)
    last = notify.until(lambda m: "STOPPING" in m)[-1]
    assert last["STOPPING"] == "1" and last["STATUS"].startswith("draining"), last
    assert notify.next() == {"STATUS": "stopped"}
    assert supervised.proc.wait(TIMEOUT) == 0, supervised.log()


# A client script whose first write (registering the function) needs the store-writer.
REGISTER_AND_RUN = """
    from client import Executor

    def triple(x):
        return 3 * x

    with Executor(endpoint_id="local") as ex:
        print("result", ex.submit(triple, 14).result(timeout=120), flush=True)
"""


def test_a_wedged_store_writer_stops_the_watchdog_pings(
    supervised: DaemonProcess, notify: NotifySocket
) -> None:
    notify.until(lambda m: "READY" in m)
    notify.until(lambda m: m.get("WATCHDOG") == "1")

    db = sqlite3.connect(supervised.state_dir / "gateway.db", isolation_level=None, timeout=30)
    db.execute("BEGIN EXCLUSIVE")  # the writer's next commit waits on this lock
    script = supervised.popen_script(REGISTER_AND_RUN)
    try:
        unhealthy, deadline = 0, time.monotonic() + TIMEOUT
        while unhealthy < 3:  # three health rounds in a row that withhold the ping
            message = notify.next(deadline)
            if "store writer stalled" in message.get("STATUS", ""):
                unhealthy += 1
            else:
                assert unhealthy == 0, f"a ping while the writer was wedged: {notify.seen}"
    finally:
        db.execute("ROLLBACK")
        db.close()
    resumed = notify.until(lambda m: m.get("WATCHDOG") == "1")[-1]
    assert resumed["STATUS"].startswith("serving on"), resumed  # says it is healthy again
    out, err = script.communicate(timeout=TIMEOUT * 2)
    assert script.returncode == 0, err
    assert "result 42" in out
    assert "unhealthy: store writer stalled" in supervised.log()
