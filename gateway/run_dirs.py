"""Workers' run directories as the daemon sees them: their names, and removing dead ones.

A local worker keeps its task sandboxes in one run directory under TMPDIR
(gateway/sandbox.py, which only workers load). A worker SIGKILLed with the
daemon leaves it behind; the name carries the worker's pid, so the next
daemon's local pool can tell a dead worker's directory from a live one's.
"""

from __future__ import annotations

import os
import shutil
import tempfile

RUN_DIR_PREFIX = "fxgate-worker-"  # then the worker's pid, "-", mkdtemp's letters


def sweep_stale(tmp: str | None = None) -> int:
    """Remove the run directories of workers that are gone (SIGKILLed with a daemon).

    Only directories this user owns, named by a pid no process has now; a
    live worker's, another user's, or one whose name does not parse is left.
    Called by the daemon when its local pool starts. Returns how many went.
    """
    tmp = tmp or tempfile.gettempdir()
    removed = 0
    try:
        entries = list(os.scandir(tmp))
    except OSError:
        return 0
    uid = os.getuid()
    for entry in entries:
        pid = _worker_pid(entry.name)
        if pid is None or _alive(pid):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != uid:
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += 1
    return removed


def _worker_pid(name: str) -> int | None:
    if not name.startswith(RUN_DIR_PREFIX):
        return None
    pid, _, rest = name[len(RUN_DIR_PREFIX) :].partition("-")
    return int(pid) if pid.isdigit() and rest else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
