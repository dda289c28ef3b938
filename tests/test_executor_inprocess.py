"""client/executor.py's two ways to name a function, against the real server in this process.

submit(fn) registers fn's code once per Executor and sends its id;
submit_to_registered_function(id) sends an id that Client.register_function
returned, without registering anything. The server counts the
RegisterFunction calls it gets; an upstream in this process runs the tasks.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from client import Client, Executor
from client.errors import RequestRefused
from gateway.upstreams.base import Upstream
from tests.support.inprocess import InlineUpstream, InProcessDaemon

TIMEOUT = 30.0


def triple(x: int) -> int:
    return 3 * x


def power(base: int, exponent: int = 2) -> int:
    return int(base**exponent)


class MethodCounter(grpc.aio.ServerInterceptor):
    """Counts the calls of each method the server receives (on the server's loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        name = handler_call_details.method.rpartition("/")[2]
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1
        return await continuation(handler_call_details)

    def count(self, method: str) -> int:
        with self._lock:
            return self.calls.get(method, 0)


@pytest.fixture
def counter() -> MethodCounter:
    return MethodCounter()


@pytest.fixture
def served(tmp_path: Path, counter: MethodCounter) -> Iterator[InProcessDaemon]:
    def upstreams() -> dict[str, Upstream]:
        return {"local": InlineUpstream()}

    daemon = InProcessDaemon(tmp_path / "state", upstreams, [counter])
    daemon.start()
    yield daemon
    daemon.close()


def test_a_function_is_registered_once_and_a_registered_id_not_at_all(
    served: InProcessDaemon, counter: MethodCounter
) -> None:
    with Client(address=served.address) as client:
        power_id = client.register_function(power)
    assert counter.count("RegisterFunction") == 1
    with Executor(endpoint_id="local", address=served.address, batch_size=2) as ex:
        # Submitter threads racing on a function's first batches may each register it
        # (harmless: the id is the same); after one answer it is known to all of them.
        assert ex.submit(triple, 1).result(TIMEOUT) == 3
        assert counter.count("RegisterFunction") == 2
        by_code = [ex.submit(triple, n) for n in range(5)]
        by_id = [ex.submit_to_registered_function(power_id, (n,), {"exponent": 3}) for n in (2, 3)]
        assert [f.result(TIMEOUT) for f in by_code] == [0, 3, 6, 9, 12]
        assert [f.result(TIMEOUT) for f in by_id] == [8, 27]
        assert ex.submit_to_registered_function(power_id, (4,)).result(TIMEOUT) == 16
    assert counter.count("RegisterFunction") == 2  # nothing more: not triple, never power
    assert counter.count("Submit") >= 4


def test_an_unknown_registered_function_id_fails_its_future(served: InProcessDaemon) -> None:
    unknown = "5f0b6c4e-2f3c-4c55-9a1e-4bcbd0b0e1a7"
    with Executor(endpoint_id="local", address=served.address) as ex:
        fut: Any = ex.submit_to_registered_function(unknown, (1,))
        err = fut.exception(TIMEOUT)
        assert isinstance(err, RequestRefused) and err.code == "NOT_FOUND", err
        assert unknown in err.message
        assert ex.submit(triple, 2).result(TIMEOUT) == 6  # the executor goes on
