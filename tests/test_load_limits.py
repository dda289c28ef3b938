"""Under a burst of calls the daemon answers each one, or refuses it with a reason.

grpc core used to cancel calls with a bare CANCELLED (no reason) once 1,000 of
them waited for the server's event loop; a client cannot tell that from a
daemon going away. Now every call is served, or refused over `max_calls` with
RESOURCE_EXHAUSTED naming the setting, which the client library treats as "retry".
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from pathlib import Path

import grpc

from client import Client
from client.connection import transient
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from tests.daemon import DaemonProcess

BURST = 3000


async def burst(address: str, calls: int) -> collections.Counter[tuple[str, str]]:
    """Make `calls` Status calls at once over one channel; count (code, details) of the answers."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.GatewayStub(channel)

        async def one() -> tuple[str, str]:
            try:
                await stub.Status(pb.StatusRequest(), timeout=120)
            except grpc.aio.AioRpcError as err:
                assert err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or transient(err)
                return err.code().name, err.details() or ""
            return "OK", ""

        return collections.Counter(await asyncio.gather(*(one() for _ in range(calls))))


def test_a_burst_of_calls_is_answered_not_cancelled(daemon: DaemonProcess) -> None:
    answers = asyncio.run(burst(daemon.address, BURST))
    assert answers == {("OK", ""): BURST}  # was ~160 of 2,000 CANCELLED with no details
    assert "Traceback" not in daemon.log()


async def hold_watches(
    address: str, group: str, count: int, then: int
) -> collections.Counter[tuple[str, str]]:
    """Open `count` watch streams, wait until each replayed, burst `then` calls, close them."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.GatewayStub(channel)
        streams = [stub.Watch(pb.WatchRequest(task_group_id=group)) for _ in range(count)]
        for stream in streams:  # each holds one of the daemon's calls from here on
            while not (await stream.read()).replay_done:
                pass
        answers = await burst(address, then)
        for stream in streams:
            stream.cancel()
        return answers


def test_calls_over_max_calls_get_resource_exhausted_that_the_client_retries(
    tmp_path: Path,
) -> None:
    d = DaemonProcess(tmp_path / "state", extra_env={"FXGATE_MAX_CALLS": "20"})
    d.start()
    try:
        with Client(address=d.address) as c:
            group = str(uuid.uuid4())
            fid = c.register_function(abs)
            batch = c.create_batch(group)
            batch.add(fid, "local", args=(-1,))
            c.batch_run(batch)
            answers = asyncio.run(hold_watches(d.address, group, 20, BURST))
            # every call over the limit is refused with the reason, none is cancelled
            ((code, details),) = answers  # one kind of answer for all of them
            assert code == "RESOURCE_EXHAUSTED" and answers[code, details] == BURST
            assert "serving its limit of 20 calls at once (max_calls" in details
            assert c.status()["version"]  # the watches closed: calls are served again
    finally:
        assert d.stop() == 0
    assert "Traceback" not in d.log()
