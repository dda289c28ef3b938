"""The daemon's real parts inside the test process: Gateway, Store, gRPC server, upstreams.

Tests of the core or of the client's streams need the real server and core,
not a subprocess: a test then controls exactly when results are committed and
when the server stops. InProcessDaemon wires them as gateway/server.py does
(without its state-dir locks, database lease and status socket), on a real
unix socket, with upstreams the test chooses.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import grpc

from fxgate_contract.limits import MAX_MESSAGE
from fxgate_contract.states import TaskState
from gateway.config import Settings
from gateway.core import Gateway
from gateway.execution import execute
from gateway.service import Servicer, add_to_server
from gateway.store.database import Store
from gateway.store.records import Completion, PendingTask
from gateway.upstreams.base import (
    FunctionSource,
    PayloadSource,
    ResultSink,
    UpstreamPorts,
    with_payloads,
)

T = TypeVar("T")


class RecordingUpstream:
    """An upstream that runs nothing: it keeps what it is given for the test to read.

    enqueue is called on the store's writer thread (after a commit) or by
    Gateway.start; the lists are shared with the test thread under _lock.
    """

    def __init__(self, name: str = "local") -> None:
        self.name = name
        self._lock = threading.Lock()
        self.enqueued: list[PendingTask] = []
        self.withdrawn: list[str] = []
        self.started = False
        self.stopped = False
        self.sink: ResultSink | None = None
        self.functions: FunctionSource | None = None
        self.payloads: PayloadSource | None = None

    def start(self, ports: UpstreamPorts) -> None:
        self.sink, self.functions, self.payloads = ports.sink, ports.functions, ports.payloads
        self.started = True

    def enqueue(self, tasks: Sequence[PendingTask]) -> None:
        with self._lock:
            self.enqueued.extend(tasks)

    def cancel(self, task_ids: Sequence[str]) -> set[str]:
        """Withdraws every task it was given and has not withdrawn before."""
        with self._lock:
            held = {t.task_id for t in self.enqueued} - set(self.withdrawn)
            gone = [t for t in task_ids if t in held]
            self.withdrawn.extend(gone)
        return set(gone)

    def stop(self) -> None:
        self.stopped = True

    def describe(self) -> str:
        with self._lock:
            return f"recorded {len(self.enqueued)} tasks"

    def task_ids(self) -> list[str]:
        with self._lock:
            return [t.task_id for t in self.enqueued]


class InlineUpstream(RecordingUpstream):
    """Runs each task it is given in this process, one at a time, on a thread of its own.

    The same execute() a local worker runs, without the worker process: for
    tests of the client against results that real code produced.
    """

    def __init__(self, name: str = "local") -> None:
        super().__init__(name)
        self._work: queue.SimpleQueue[Sequence[PendingTask] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="inline-upstream", daemon=True)

    def start(self, ports: UpstreamPorts) -> None:
        super().start(ports)
        self._thread.start()

    def enqueue(self, tasks: Sequence[PendingTask]) -> None:
        super().enqueue(tasks)
        self._work.put(tasks)

    def stop(self) -> None:
        self._work.put(None)
        self._thread.join()
        super().stop()

    def _run(self) -> None:
        assert self.sink is not None and self.functions is not None and self.payloads is not None
        while (tasks := self._work.get()) is not None:
            done = []
            for task, payload in with_payloads(tasks, self.payloads):
                outcome = execute(
                    self.functions(task.function_id)[1], payload, task.result_serializers
                )
                done.append(
                    Completion(
                        TaskState.FAILED if outcome.error_code else TaskState.SUCCESS,
                        outcome.data,
                        task_id=task.task_id,
                        error_code=outcome.error_code,
                        error_message=outcome.error_message,
                        exception=outcome.exception,
                    )
                )
            self.sink(done).result()


class InProcessDaemon:
    """A Gateway served by a grpc.aio server on a unix socket, on a loop thread of its own.

    start() and stop() may alternate (a daemon restart on the same socket and
    database); close() ends the loop thread. The server's loop thread owns the
    server; the test thread calls start/stop/close.
    """

    def __init__(
        self,
        state_dir: Path,
        upstreams: Callable[[], dict[str, Any]] = dict,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.settings = Settings(state_dir=state_dir, db=f"sqlite:///{state_dir / 'gateway.db'}")
        self.socket = state_dir / "gateway.sock"
        self.address = f"unix://{self.socket}"
        self._upstreams = upstreams
        self._interceptors = list(interceptors)
        self.gateway: Gateway | None = None
        self._server: grpc.aio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-grpc-loop")
        self._thread.start()
        self._blocking = ThreadPoolExecutor(4, thread_name_prefix="test-grpc-call")

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def start(self) -> Gateway:
        gateway = Gateway(self.settings, Store(self.settings.db), self._upstreams())
        gateway.start()
        self._server = self._on_loop(self._serve(gateway))
        self.gateway = gateway
        return gateway

    async def _serve(self, gateway: Gateway) -> grpc.aio.Server:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
            ],
            interceptors=self._interceptors,
        )
        add_to_server(Servicer(gateway, self._blocking), server)
        server.add_insecure_port(self.address)
        await server.start()
        return server

    def stop(self, grace: float = 1.0) -> None:
        """As the daemon stops: end the watch streams, stop serving, then stop the core."""
        gateway, server = self.gateway, self._server
        self.gateway = self._server = None
        if gateway is not None:
            gateway.hub.close()
        if server is not None:
            self._on_loop(server.stop(grace))
        if gateway is not None:
            gateway.stop()

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._blocking.shutdown()
