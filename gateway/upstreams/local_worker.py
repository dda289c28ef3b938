"""The body of one local worker process: run tasks sent down a pipe, send outcomes back.

Workers are the only processes on the daemon's side that deserialize user
code and data. Each outcome is sent as soon as its task ends, so when a worker
dies the daemon knows exactly which task it was running.
"""

from __future__ import annotations

import signal
from multiprocessing.connection import Connection

# parent -> worker: [(task_id, function_id, function_code or "", payload, serializers)]
Job = tuple[str, str, str, str, tuple[str, ...]]
# worker -> parent: (task_id, data, error_code, error_message, exception)
Done = tuple[str, str, str, str, str]


def worker_main(conn: Connection) -> None:
    """Loop until the parent sends None or goes away.

    Stop signals meant for the daemon (systemd's whole-group SIGTERM, a
    terminal's Ctrl-C) are ignored: the daemon decides when a worker ends, so
    a running task is re-run after a restart instead of failing.
    """
    # Here, not at the top: the daemon imports this module for the entry point
    # only, and must not load dill (it never deserializes user data).
    from gateway.execution import execute

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    functions: dict[str, str] = {}
    while True:
        try:
            jobs: list[Job] | None = conn.recv()
        except (EOFError, OSError):
            return
        if jobs is None:
            return
        for task_id, function_id, code, payload, serializers in jobs:
            if code:
                functions[function_id] = code
            outcome = execute(functions.get(function_id, ""), payload, serializers)
            conn.send(
                (
                    task_id,
                    outcome.data,
                    outcome.error_code,
                    outcome.error_message,
                    outcome.exception,
                )
            )
