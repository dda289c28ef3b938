"""The daemon's life: hold the state dir, serve gRPC, drain on SIGTERM.

One daemon per state dir, per socket path and per database (locks held for
the daemon's life: gateway/state_dir.py, gateway/store_lease.py), a unix
socket that only its owner can open (mode 0600) or a TCP port with TLS and a
token (gateway/auth.py), and a shutdown that stops taking calls, lets running
ones finish, commits what is queued and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, TypeVar

import grpc

from fxgate_contract.address import status_socket_path
from fxgate_contract.limits import MAX_MESSAGE
from fxgate_contract.status import status_document
from gateway.auth import BearerTokenCheck, DaemonToken, server_credentials
from gateway.config import Settings
from gateway.core import Gateway
from gateway.errors import AlreadyRunning, ConfigError
from gateway.health import HealthLoop
from gateway.notify import Notifier
from gateway.service import Servicer, add_to_server, status_response
from gateway.state_dir import hold, hold_socket_path, prepare_state_dir
from gateway.status_socket import StatusSocket
from gateway.store.database import Store
from gateway.store_lease import StoreLease, take_lease
from gateway.upstreams.base import Upstream
from gateway.upstreams.cluster.upstream import ClusterUpstream, check_engine
from gateway.upstreams.local import LocalUpstream

if TYPE_CHECKING:
    from gateway.metrics_http import MetricsServer

log = logging.getLogger(__name__)
T = TypeVar("T")

# Threads for the blocking part of calls (store reads, validation); a watch
# stream or a submit waiting for its commit holds none of them.
BLOCKING_THREADS = 8
RETENTION_CHECK_S = 3600.0
# How often the database lease is checked (a PostgreSQL session can end under it).
LEASE_CHECK_S = 2.0
# Calls received but not yet taken up by the event loop: no limit of their own
# (grpc core's largest); max_calls (service.CallLimit) refuses the excess with
# RESOURCE_EXHAUSTED and a reason.
PENDING_CALLS = 2**31 - 1


def build_upstreams(settings: Settings, store: Store) -> dict[str, Upstream]:
    """The local upstream always; the Globus one when credentials are configured; one per
    [cluster.<name>] table, whose engine config must pass the engine child's check."""
    local = LocalUpstream(settings.local_workers, settings.worker_env)
    upstreams: dict[str, Upstream] = {"local": local}
    for name, cluster in settings.cluster.items():
        problem = check_engine(cluster)
        if problem:
            raise ConfigError(f"[cluster.{name}]: {problem}")
        upstreams[name] = ClusterUpstream(cluster, settings.state_dir)
    if settings.globus.configured:
        from gateway.upstreams.globus.results import ResultStream
        from gateway.upstreams.globus.upstream import GlobusUpstream
        from gateway.upstreams.globus.web import WebService

        web = WebService(settings.globus)
        results = ResultStream(web.amqp_url, prefetch=settings.globus.prefetch)
        upstreams["globus"] = GlobusUpstream(settings.globus, web, results)
    return upstreams


class Daemon:
    """A running fxgate daemon."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stopping = threading.Event()
        self._stop_signal: int | None = None
        # Held from start to stop, on the main thread: see gateway/state_dir.py.
        self._lock: IO[str] | None = None
        self._socket_lock: IO[str] | None = None
        self._lease: StoreLease | None = None
        self._lease_keeper = threading.Thread(target=self._keep_lease, name="store-lease")
        self.lost_lease: AlreadyRunning | None = None  # set by the lease keeper thread
        self.gateway: Gateway | None = None
        self.server: grpc.aio.Server | None = None
        self.status_socket: StatusSocket | None = None
        self.metrics: MetricsServer | None = None
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="grpc-loop")
        self._blocking = ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="grpc-call")
        # systemd's notify socket (a no-op outside systemd) and, when systemd set a
        # watchdog, the "health" thread that pings it (gateway/health.py).
        self.notifier = Notifier()
        self._health: HealthLoop | None = None

    def start(self) -> None:
        """Take the state dir and the store, resume tasks, serve; then tell systemd READY=1."""
        s = self.settings
        self.notifier.status("starting")
        tls: grpc.ServerCredentials | None = None
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if s.socket_path is None:  # TCP needs TLS and a token: refused before anything starts
            tls, interceptors = server_credentials(s), [BearerTokenCheck(DaemonToken(s))]
        prepare_state_dir(s.state_dir)
        self._lock = hold(
            s.state_dir / "gateway.lock",
            f"state dir {s.state_dir}",
            s.state_dir,
            "stop it first or choose another --state-dir",
        )
        if s.socket_path is not None:
            self._socket_lock = hold_socket_path(s.socket_path, s.state_dir)
        self._lease = take_lease(s.resolved_db, s.state_dir)  # before any task is resumed
        store = Store(s.resolved_db, busy_timeout_ms=s.db_busy_timeout_ms)
        self.gateway = Gateway(s, store, build_upstreams(s, store))
        self.metrics = _metrics_server(s, self.gateway)  # a bad port stops us before any work
        self.gateway.start()
        if self.metrics is not None:
            self.metrics.start()
        self._loop_thread.start()
        self._on_loop(self._start_server(self.gateway, tls, interceptors))
        self._serve_status()
        threading.Thread(target=self._retention_loop, name="retention", daemon=True).start()
        self._lease_keeper.start()
        log.info(
            "fxgate serving on %s (store %s, upstreams: %s, local endpoint %s)",
            s.resolved_address,
            self.gateway.store.safe_url,
            ", ".join(sorted(self.gateway.upstreams)),
            self.gateway.local_endpoint_id,
        )
        self._ready()

    def _ready(self) -> None:
        """Calls are served and upstreams resumed: READY=1, and the watchdog pings begin."""
        assert self.gateway is not None
        status = (
            f"serving on {self.settings.resolved_address}; "
            f"upstreams: {', '.join(sorted(self.gateway.upstreams))}"
        )
        self.notifier.ready(status)
        if self.notifier.watchdog_s is not None:
            self._health = HealthLoop(
                self.notifier, self._loop, self.gateway.store.writer_stalled_s, status
            )
            self._health.start()

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and wait for its outcome."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _start_server(
        self,
        gateway: Gateway,
        tls: grpc.ServerCredentials | None,
        interceptors: list[grpc.aio.ServerInterceptor],
    ) -> None:
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
                # grpc core cancels calls (bare CANCELLED) once 1,000 wait unread for the
                # event loop, as in any burst; let them wait, so that max_calls decides.
                ("grpc.server.max_pending_requests", PENDING_CALLS),
                ("grpc.server.max_pending_requests_hard_limit", PENDING_CALLS),
            ],
            interceptors=interceptors,
        )
        add_to_server(Servicer(gateway, self._blocking), self.server)
        self._bind(self.server, tls)
        await self.server.start()

    def _bind(self, server: grpc.aio.Server, tls: grpc.ServerCredentials | None) -> None:
        path = self.settings.socket_path
        if path is None:
            assert tls is not None  # start() built it for every TCP address
            address = self.settings.resolved_address
            try:
                bound = server.add_secure_port(address, tls)
            except RuntimeError as exc:
                raise ConfigError(f"cannot listen on {address}: {exc}") from None
            if not bound:
                raise ConfigError(f"cannot listen on {address}")
            return
        old = os.umask(0o177)  # start() made the path ours (hold_socket_path)
        try:
            server.add_insecure_port(f"unix://{path}")
        finally:
            os.umask(old)

    def _serve_status(self) -> None:
        gateway, path = self.gateway, status_socket_path(self.settings.resolved_address)
        assert gateway is not None
        if path is None:  # TCP: `fxgate status` asks the Status call instead
            return
        try:
            self.status_socket = StatusSocket(
                path, lambda: status_document(status_response(gateway.status()))
            )
        except OSError as exc:  # e.g. a path over the 107 bytes a unix socket allows
            log.warning("not serving the status socket %s (%s): `fxgate status` fails", path, exc)
            return
        self.status_socket.start()

    def _retention_loop(self) -> None:
        assert self.gateway is not None
        while not self._stopping.wait(RETENTION_CHECK_S):
            try:
                _, gone = self.gateway.collect_garbage(dry_run=False)
            except Exception as exc:  # noqa: BLE001 - try again next round
                log.warning("retention sweep failed: %s", exc)
                continue
            for group_id in gone:  # a stream still open on one ends, saying why
                self.gateway.hub.end_group(group_id, f"task group {group_id} expired (retention)")
            if gone:
                log.info("retention: released %d finished task groups", len(gone))

    def _keep_lease(self) -> None:
        """Stop the daemon if another one took the database while our session was gone."""
        assert self._lease is not None
        while not self._stopping.wait(LEASE_CHECK_S):
            try:
                self._lease.keep()
            except AlreadyRunning as exc:
                log.error("lost the database lease: %s; stopping", exc)
                self.lost_lease = exc
                self._stop_signal = signal.SIGTERM
                return

    def request_stop(self, signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        """The signal handler: only records the request (taking a lock here could deadlock)."""
        self._stop_signal = signum

    def wait(self) -> None:
        """Block until a stop signal arrives.

        A signal may be delivered to any thread, and Python runs its handler
        only when the main thread executes bytecode: so the main thread wakes
        up regularly instead of blocking on a lock forever.
        """
        while self._stop_signal is None:
            time.sleep(0.2)
        log.info("received %s: draining", signal.Signals(self._stop_signal).name)
        self._stopping.set()

    def stop(self) -> None:
        """Stop accepting calls, let running ones end, commit what is queued."""
        self._stopping.set()
        self.notifier.stopping("draining: finishing running calls, committing queued writes")
        for side in (self._health, self.status_socket, self.metrics):  # who looks in from outside
            if side is not None:
                side.stop()
        if self.gateway is not None:
            self.gateway.hub.close()  # end watch streams; clients reconnect later
        if self.server is not None:
            self._on_loop(self.server.stop(grace=5))
        if self._loop_thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join()
        self._loop.close()
        self._blocking.shutdown()
        if self.gateway is not None:
            self.gateway.stop()
        path = self.settings.socket_path
        if path is not None and self._socket_lock is not None:  # only the owner removes it
            path.unlink(missing_ok=True)
        if self._lease_keeper.is_alive():
            self._lease_keeper.join()
        for lock in (self._socket_lock, self._lock):
            if lock is not None:
                lock.close()
        if self._lease is not None:
            self._lease.release()
        self.notifier.status("stopped")
        self.notifier.close()
        log.info("fxgate stopped")


def _metrics_server(settings: Settings, gateway: Gateway) -> MetricsServer | None:
    """The metrics endpoint, bound but not yet serving; None when metrics_port is 0.

    prometheus_client is imported only here: a daemon without metrics does not load it.
    """
    if not settings.metrics_port:
        return None
    from gateway.metrics import GatewayCollector
    from gateway.metrics_http import MetricsServer

    return MetricsServer(settings.metrics_host, settings.metrics_port, GatewayCollector(gateway))


def serve(settings: Settings) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT."""
    daemon = Daemon(settings)
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
    try:
        daemon.start()
        daemon.wait()
    finally:
        daemon.stop()
    if daemon.lost_lease is not None:
        raise daemon.lost_lease
