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
the daemon leaves its run directory behind; its name carries the worker's pid,
and the next local pool to start removes the run directories of dead workers
(gateway/run_dirs.py).

Cost: creating and removing a directory is two journaled metadata writes, about
130 us on this machine's ext4, more than a trivial task costs a worker. So a
worker keeps one empty directory and renames it from task to task: a sandbox the
task left empty is renamed straight to the next task's name in the batch (or back
to the spare name when the batch ends) before the outcome is sent; only one
holding files is deleted and a new spare made. One rename (about 6 us), one
directory read, one chdir and two variables a task. The finished task's path is
gone either way before its result leaves the worker. (A process a task left
running in an empty sandbox would find itself in the next task's: the price of
reuse; a task that forks daemons should give them a directory of their own.)

State: the process's cwd, the two variables and the free directory belong to the
worker's one thread. Between tasks the variables keep the last task's values
(only tasks read them; each task gets its own).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

from gateway.run_dirs import RUN_DIR_PREFIX

SANDBOX_VAR = "GC_TASK_SANDBOX_DIR"
TASK_ID_VAR = "GC_TASK_UUID"


class RunDir:
    """A worker's directory of task sandboxes."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-")
        self._spare = os.path.join(self.path, ".spare")
        os.mkdir(self._spare)
        self._free = self._spare  # an empty directory: the next task's sandbox
        os.chdir(self.path)

    def enter(self, task_id: str) -> str:
        """Make the task's new empty sandbox, set the endpoint's variables, go there."""
        path = self._place(self._path_for(task_id))
        os.environ[SANDBOX_VAR] = path
        os.environ[TASK_ID_VAR] = task_id
        os.chdir(path)
        return path

    def leave(self, path: str, next_task_id: str | None) -> None:
        """Remove the sandbox's path; its directory becomes the next task's if left empty."""
        try:
            empty = not os.listdir(path)  # a third cheaper than scandir for an empty one
        except OSError:  # removed or made unreadable by the task
            empty = False
        if empty:
            self._free = path
            self._place(self._path_for(next_task_id) if next_task_id else self._spare)
            return
        shutil.rmtree(path, ignore_errors=True)
        os.mkdir(self._spare)
        self._free = self._spare

    def _path_for(self, task_id: str) -> str:
        safe = task_id and "/" not in task_id and not task_id.startswith(".")
        return f"{self.path}/{task_id if safe else uuid.uuid4()}"

    def _place(self, path: str) -> str:
        """Rename the free directory to ``path`` (or a fresh name if ``path`` is taken)."""
        if self._free != path:
            try:
                os.rename(self._free, path)
            except OSError:  # a directory of that name is left over and not empty
                path = os.path.join(self.path, str(uuid.uuid4()))
                os.rename(self._free, path)
            self._free = path
        return path

    def close(self) -> None:
        """Remove the run directory and everything a task left in it."""
        os.chdir("/")
        shutil.rmtree(self.path, ignore_errors=True)
