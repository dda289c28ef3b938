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

Cost: creating and removing a directory is two journaled metadata writes, about
130 us on this machine's ext4, more than a trivial task costs a worker. So a
worker keeps one empty spare directory and renames it to the task's sandbox (one
rename, about 6 us); a sandbox the task left empty is renamed back to be the spare,
and only one holding files is deleted (and a new spare made). Its path is gone
either way. (A process a task left running in an empty sandbox would find itself
in the next task's: the cost of reuse; a task that forks daemons should write
somewhere of its own.)

State: the process's cwd, the two variables and the spare directory belong to the
worker's one thread.
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
        self._spare = os.path.join(self.path, ".spare")  # empty: the next task's sandbox
        os.mkdir(self._spare)
        os.chdir(self.path)

    @contextmanager
    def sandbox(self, task_id: str) -> Iterator[str]:
        """Run the body in a new empty ``<run dir>/<task_id>``, the endpoint's variables set."""
        path = self._take(task_id)
        os.environ[SANDBOX_VAR] = path
        os.environ[TASK_ID_VAR] = task_id
        os.chdir(path)
        try:
            yield path
        finally:
            os.chdir(self.path)  # the task may have gone anywhere
            os.environ.pop(SANDBOX_VAR, None)
            os.environ.pop(TASK_ID_VAR, None)
            self._give_back(path)

    def _take(self, task_id: str) -> str:
        name = task_id if _safe_name(task_id) else str(uuid.uuid4())
        path = os.path.join(self.path, name)
        try:
            os.rename(self._spare, path)
        except FileNotFoundError:  # the last task's could not be given back
            os.mkdir(path)
        except OSError:  # a directory of that name is left over (rename refuses a full one)
            path = os.path.join(self.path, str(uuid.uuid4()))
            os.rename(self._spare, path)
        return path

    def _give_back(self, path: str) -> None:
        try:
            with os.scandir(path) as entries:
                empty = next(entries, None) is None
        except OSError:  # removed or made unreadable by the task
            empty = False
        if empty:
            os.rename(path, self._spare)
            return
        shutil.rmtree(path, ignore_errors=True)
        os.mkdir(self._spare)

    def close(self) -> None:
        """Remove the run directory and everything a task left in it."""
        os.chdir("/")
        shutil.rmtree(self.path, ignore_errors=True)


def _safe_name(task_id: str) -> bool:
    return bool(task_id) and "/" not in task_id and not task_id.startswith(".")
