"""The status socket: the daemon's health and counts as one JSON document, no gRPC needed.

`fxgate status` is what health checks run (Docker HEALTHCHECK, monitoring,
on-call hands), often and as a new process each time. Over gRPC such a
process spends most of its life importing grpc and protobuf; over this socket
it needs only the standard library and answers in a fraction of the time.
The socket sits beside the gRPC one (`<socket>.status`), mode 0600 like it;
a connection gets the document and is closed, nothing is read from it.
"""

from __future__ import annotations

import json
import logging
import os
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WRITE_TIMEOUT_S = 2.0
# How often the serving thread looks for a stop request (bounds the daemon's shutdown).
STOP_CHECK_S = 0.1


class StatusSocket:
    """Serves `document()` to every connection, one at a time, on its own thread."""

    def __init__(self, path: Path, document: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        outer = self

        class _Handler(socketserver.StreamRequestHandler):
            timeout = WRITE_TIMEOUT_S  # a reader that never reads cannot hold the thread

            def handle(self) -> None:
                try:
                    body = json.dumps(document()).encode() + b"\n"
                    self.wfile.write(body)
                except OSError as exc:
                    log.debug("status reader on %s went away: %s", outer.path, exc)
                except Exception:  # noqa: BLE001 - a broken answer must not end the thread
                    log.exception("could not answer on the status socket %s", outer.path)

        self.path.unlink(missing_ok=True)  # stale socket of a dead daemon; the lock proves it
        old = os.umask(0o177)
        try:
            self._server = socketserver.UnixStreamServer(str(path), _Handler)
        finally:
            os.umask(old)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": STOP_CHECK_S}, name="status"
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)
