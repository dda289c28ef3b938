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
Each task runs in a new directory of its own, removed when it ends
(gateway/sandbox.py), so the daemon's working directory never fills with files.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import struct
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from gateway.sandbox import RunDir

HEADER = struct.Struct("!I")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


# Reading an outcome is per task on the daemon's dispatch thread, so it uses C calls
# only: a NamedTuple's generated __new__ is a Python function (0.7 us), tuple.__new__
# is not, and all(map(...)) checks the parts without a generator.
_as_tuple: Any = tuple.__new__
_is_str: Any = str.__instancecheck__
DONE_FIELDS = 5


# The two messages are NamedTuples: a tuple is what json writes as an array, so a
# message goes on the wire as it is built (no conversion per task), the wire stays
# the positional array it always was, and both ends read it by field name.
class Job(NamedTuple):
    """daemon -> worker, one task of a batch (a batch is a JSON array of Jobs)."""

    task_id: str
    function_id: str
    function_code: str  # "" once this worker was sent the function's code
    payload: str
    result_serializers: list[str]
    # The task's resource_specification as JSON text ("" when none), for MPI
    # tasks; its keys were checked at Submit (gateway/task_options.py).
    resource_specification: str

    @classmethod
    def from_json(cls, item: Any) -> Job:
        """A Job from its decoded array (the daemon wrote it: trusted, not checked)."""
        job: Job = _as_tuple(cls, item)
        return job


class Done(NamedTuple):
    """worker -> daemon, one message per finished task."""

    task_id: str
    data: str  # the serialized result, or the traceback text
    error_code: str  # "" on success
    error_message: str
    exception: str  # the serialized exception, or ""

    @classmethod
    def from_json(cls, message: Any) -> Done | None:
        """A Done from its decoded array; None if it is not one (a worker runs user code)."""
        if isinstance(message, list) and len(message) == DONE_FIELDS and all(map(_is_str, message)):
            done: Done = _as_tuple(cls, message)
            return done
        return None


# Made once: json.dumps with any option builds an encoder per call (1.5 us a message).
# Messages are built here from strings and lists, never circular: not checked.
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def encode(message: Any) -> bytes:
    """One framed message (a Done, or a list of Jobs): its length, then its JSON."""
    body = _ENCODER.encode(message).encode()
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
    from fxgate_contract import sdk_shim
    from gateway.sandbox import RunDir

    sdk_shim.install()  # shell/MPI functions load without the SDK installed here
    run_dir = RunDir()  # also moves this process out of the daemon's working directory
    try:
        _serve(fd, run_dir)
    finally:
        run_dir.close()


def _serve(fd: int, run_dir: RunDir) -> None:
    """Run each batch's jobs in order, each in its own sandbox, and write each outcome."""
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
        jobs = [Job.from_json(item) for item in json.loads(body)]
        for job, following in zip(jobs, jobs[1:] + [None], strict=True):
            if job.function_code:
                functions[job.function_id] = job.function_code
            sandbox = run_dir.enter(job.task_id)
            try:
                outcome = execute(
                    functions.get(job.function_id, ""),
                    job.payload,
                    job.result_serializers,
                    job.resource_specification,
                )
            finally:  # the sandbox is gone before the outcome is sent
                run_dir.leave(sandbox, following.task_id if following else None)
            done = Done(
                job.task_id,
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
