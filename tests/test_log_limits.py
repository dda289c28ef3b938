"""A fault that repeats many times a second writes a few log lines, not thousands.

A 20 s storage fault used to write 1,000-2,500 lines and a client repeating a
bad call one line per call. Now the first line of a kind is written at once,
then at most one every few seconds that says how many were held back.
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from pathlib import Path

import grpc

from client import Client, Executor
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from tests.daemon import DaemonProcess

REPEATED = re.compile(r"could not store \d+ results: .* \(repeated (\d+) times in the last")


def slow_double(x: int) -> int:
    import time

    time.sleep(0.02)
    return 2 * x


def wait_for_log(daemon: DaemonProcess, done: re.Pattern[str], flood: str, most: int) -> str:
    """Read the daemon's log as it grows until `done` matches or `flood` occurs `most` times."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log = daemon.log()
        if done.search(log) or log.count(flood) >= most:
            return log
        time.sleep(0.05)  # polling a file that grows: there is no event to wait on
    raise AssertionError(f"neither happened in 60 s:\n{daemon.log()[-3000:]}")


def test_a_client_repeating_a_bad_call_writes_a_few_log_lines(daemon: DaemonProcess) -> None:
    stub = pb_grpc.GatewayStub(grpc.insecure_channel(daemon.address))
    for _ in range(1000):
        try:
            stub.GetTaskGroup(pb.GetTaskGroupRequest(task_group_id=str(uuid.uuid4())))
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND
    lines = daemon.log().count("GetTaskGroup refused: unknown task group")
    assert 1 <= lines <= 10  # was 1,000


def test_a_storage_fault_writes_a_few_log_lines_and_loses_nothing(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path / "state", extra_env={"FXGATE_DB_BUSY_TIMEOUT_MS": "50"})
    d.start()
    try:
        with Client(address=d.address) as c:
            fid = c.register_function(slow_double)
            batch = c.create_batch()
            for i in range(300):
                batch.add(fid, "local", args=(i,))
            c.batch_run(batch)  # answers once the tasks are durable
            blocker = sqlite3.connect(d.state_dir / "gateway.db", isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            # Results keep failing to commit until the held-back count is reported.
            log = wait_for_log(d, REPEATED, "could not store", most=50)
            blocker.execute("ROLLBACK")
            blocker.close()
            with Executor(endpoint_id="local", address=d.address) as ex:
                futures = ex.reload_tasks(batch.task_group_id)
                assert sorted(f.result(timeout=60) for f in futures) == [2 * i for i in range(300)]
            assert c.status()["tasks"] == {"SUCCESS": 300}  # each stored once
    finally:
        assert d.stop() == 0
    assert log.count("could not store") <= 3  # the first at once, then one per 5 s
    found = REPEATED.search(log)
    assert found is not None and int(found.group(1)) >= 10
    assert log.count("retrying the commit") <= 6
    assert "Traceback" not in d.log()
