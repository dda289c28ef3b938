"""The body of one local worker process: run tasks read from a socket, write outcomes back.

Workers are the only processes on the daemon's side that deserialize user
code and data. Each outcome is written as soon as its task ends, so when a
worker dies the daemon knows exactly which task it was running.

A worker is started by the daemon as ``python -m gateway.upstreams.local_worker
DAEMON_PID FD`` with an environment the daemon chose (no credentials) and one
end of a socketpair as FD. Messages both ways are JSON behind a 4-byte length:
the daemon parses what a worker writes (where user code runs) without
unpickling anything. The worker blocks on its socket both ways; that cannot
deadlock because the daemon never blocks on it (gateway/upstreams/local.py).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import struct
import sys
from typing import Any

# daemon -> worker: [[task_id, function_id, function_code or "", payload, [serializers]], ...]
Job = tuple[str, str, str, str, list[str]]
# worker -> daemon: [task_id, data, error_code, error_message, exception]
Done = tuple[str, str, str, str, str]
HEADER = struct.Struct("!I")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def encode(message: Any) -> bytes:
    """One framed message: its length, then its JSON."""
    body = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


def die_with(parent: int) -> None:
    """Be SIGKILLed by the kernel when the daemon's thread that started us ends.

    Then a daemon killed with SIGKILL leaves no worker running a task, and the
    restarted daemon may run that task again without two copies at once. The
    getppid() check closes the window where the daemon died before prctl.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(0)


def worker_main(parent: int, fd: int) -> None:
    """Run batches until the daemon closes its end of the socket or goes away.

    Stop signals meant for the daemon (systemd's whole-group SIGTERM, a
    terminal's Ctrl-C) are ignored: the daemon decides when a worker ends, so
    a running task is re-run after a restart instead of failing.
    """
    die_with(parent)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Here, not at the top: the daemon imports this module for the wire format
    # only, and must not load dill (it never deserializes user data).
    from gateway.execution import execute

    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)  # a task's own subprocesses do not get it
    stream = sock.makefile("rb")
    functions: dict[str, str] = {}
    while True:
        header = stream.read(HEADER.size)
        if len(header) < HEADER.size:
            return
        (size,) = HEADER.unpack(header)
        body = stream.read(size)
        if len(body) < size:
            return
        jobs: list[Job] = json.loads(body)
        for task_id, function_id, code, payload, serializers in jobs:
            if code:
                functions[function_id] = code
            outcome = execute(functions.get(function_id, ""), payload, serializers)
            done: Done = (
                task_id,
                outcome.data,
                outcome.error_code,
                outcome.error_message,
                outcome.exception,
            )
            try:
                sock.sendall(encode(done))
            except OSError:  # the daemon is gone
                return


if __name__ == "__main__":
    worker_main(int(sys.argv[1]), int(sys.argv[2]))
