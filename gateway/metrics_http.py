"""The metrics endpoint: Prometheus' text format over plain HTTP, on its own port and thread.

Off unless `metrics_port` is set; bound to 127.0.0.1 unless `metrics_host`
says otherwise, since the numbers (task counts, queue depths) are for the
machine's own monitoring agent, and the endpoint has neither TLS nor a
token. A port that cannot be bound stops the start with a message naming
it, before any task is resumed. Scrapes are served one at a time on the
"metrics" thread; the daemon's own threads never wait for one.
"""

from __future__ import annotations

import socket
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.registry import Collector

from gateway.errors import ConfigError

# A scraper that connects and sends nothing cannot hold the thread longer than this.
REQUEST_TIMEOUT_S = 5.0
# How often the serving thread looks for a stop request (bounds the daemon's shutdown).
STOP_CHECK_S = 0.1


class _QuietHandler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """No line on stderr per scrape (every 15 s, for the daemon's life)."""


class _Server(WSGIServer):
    pass


class _Server6(WSGIServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """Serves a collector's metrics (and the process' CPU and memory) at any path."""

    def __init__(self, host: str, port: int, collector: Collector) -> None:
        registry = CollectorRegistry()
        registry.register(collector)
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, RSS, open fds
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = make_server(
                host, port, make_wsgi_app(registry), server_class, handler_class=_QuietHandler
            )
        except OSError as exc:  # in use, not ours to bind, no such address
            reason = exc.strerror or str(exc)
            raise ConfigError(
                f"cannot serve metrics on {host}:{port} ({reason}); choose another "
                "metrics_port (--metrics-port, FXGATE_METRICS_PORT) or leave it unset"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": STOP_CHECK_S},
            name="metrics",
            daemon=True,
        )

    @property
    def port(self) -> int:
        """The port bound."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket (also if never started)."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
