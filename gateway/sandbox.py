"""One new directory per task on a local worker, as an endpoint's sandbox, removed afterwards.

Why: tasks (a ShellFunction above all) write files in their working directory; a
worker that ran them in the daemon's would fill it with two files per task. A
Globus endpoint runs each task in ``<run_dir>/<task_uuid>`` with GC_TASK_SANDBOX_DIR
and GC_TASK_UUID set (globus_compute_endpoint engines/helper.py execute_task); a
local worker does the same, and removes the directory when the task ends, success
or failure: results travel back as data, never as files left behind.

Where: each worker makes its own run directory under TMPDIR (mode 0700, from
mkdtemp) rather than under the daemon's state dir. Task scratch then lives with
other scratch (often a tmpfs), cannot reach the store or the socket through a
relative path, and needs nothing passed from the daemon. A worker SIGKILLed with
the daemon leaves its run directory behind for the system's tmp cleaner.

State: the process's cwd and the two variables belong to the worker's one thread.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

SANDBOX_VAR = "GC_TASK_SANDBOX_DIR"
TASK_ID_VAR = "GC_TASK_UUID"


class RunDir:
    """A worker's directory of task sandboxes; the worker's cwd between tasks."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="fxgate-worker-")
        os.chdir(self.path)

    @contextmanager
    def sandbox(self, task_id: str) -> Iterator[str]:
        """Run the body in ``<run dir>/<task_id>``, with the endpoint's variables set."""
        name = task_id if _safe_name(task_id) else str(uuid.uuid4())
        path = os.path.join(self.path, name)
        os.mkdir(path)
        os.environ[SANDBOX_VAR] = path
        os.environ[TASK_ID_VAR] = task_id
        os.chdir(path)
        try:
            yield path
        finally:
            os.chdir(self.path)  # the task may have gone anywhere
            os.environ.pop(SANDBOX_VAR, None)
            os.environ.pop(TASK_ID_VAR, None)
            _remove(path)

    def close(self) -> None:
        """Remove the run directory and everything a task left in it."""
        os.chdir("/")
        shutil.rmtree(self.path, ignore_errors=True)


def _safe_name(task_id: str) -> bool:
    return bool(task_id) and "/" not in task_id and task_id not in (".", "..")


def _remove(path: str) -> None:
    try:
        os.rmdir(path)  # most tasks leave nothing: one system call
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
