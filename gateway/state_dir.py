"""The daemon's own files, never trusted blindly: state dir, lock files, socket path.

The state dir holds the database (everyone's function code and pickled
results) and the socket clients unpickle answers from. A dir someone else
owns or can write, or a symlink planted where a file should be, would let
that someone read the database, redirect a write onto a file of theirs (or
root's), or put a socket of their own before the clients. So the daemon
refuses to start on any of these, with one line saying which path and why.

A lock (flock) held for the daemon's life marks each thing only one daemon
may use: its state dir, its socket path, its SQLite file (gateway/store_lease.py).
The kernel drops a lock when its holder dies, so a SIGKILLed daemon's locks
are free at once. Each lock file records its holder, so a refusal names it.
All of this runs on the main thread during start and stop.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
from pathlib import Path
from typing import IO

from fxgate_contract.socket_trust import directory_problem, socket_problem, user_name
from gateway.errors import AlreadyRunning, ConfigError


def _own_uids() -> frozenset[int]:
    return frozenset({os.geteuid(), 0})


def prepare_state_dir(state_dir: Path) -> None:
    """Create the state dir 0700, or refuse one that is a symlink, another's, or open to writes."""
    try:
        _check_state_dir(state_dir)
    except OSError as exc:
        raise ConfigError(f"state dir {state_dir}: {exc.strerror} ({exc.filename})") from None


def _check_state_dir(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.lstat(state_dir)
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"state dir {state_dir} is a symlink: give its real path")
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"state dir {state_dir} is not a directory")
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"state dir {state_dir} belongs to {user_name(st.st_uid)}, not to "
            f"{user_name(os.geteuid())} who runs the daemon: use a dir of your own"
        )
    problem = directory_problem(state_dir, {os.geteuid()}, sticky_ok=False)
    if problem is not None:
        raise ConfigError(f"state dir {problem}: make it private (chmod 700)")
    for parent in state_dir.absolute().parents:
        problem = directory_problem(parent, _own_uids(), sticky_ok=True)
        if problem is not None:
            raise ConfigError(f"state dir {state_dir} is not safe: {problem}")


def open_private(path: Path, *, create: bool = True) -> int:
    """A file descriptor on our own regular file at path, made mode 0600; never via a symlink."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ENOENT and not create:
            raise
        if exc.errno == errno.ELOOP:
            raise ConfigError(
                f"{path} is a symlink: remove it (fxgate never follows one)"
            ) from None
        raise ConfigError(f"cannot open {path}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else "not the daemon's"
        raise ConfigError(f"{path} is {what} (owner {user_name(st.st_uid)}): remove it")
    if stat.S_IMODE(st.st_mode) != 0o600:
        os.fchmod(fd, 0o600)
    return fd


def holder_record(state_dir: Path) -> str:
    """Who holds a lock: enough for a refused daemon to name us."""
    return json.dumps(
        {"host": socket.gethostname(), "pid": os.getpid(), "state_dir": str(state_dir.absolute())}
    )


def describe_holder(record: str) -> str:
    try:
        h = json.loads(record)
        return f"pid {h['pid']} on {h['host']}, state dir {h['state_dir']}"
    except (ValueError, KeyError, TypeError):
        return f"pid {record.strip() or 'unknown'}"  # an older daemon wrote its pid alone


def hold(path: Path, what: str, state_dir: Path, advice: str) -> IO[str]:
    """Hold an exclusive lock on path for the daemon's life; refuse if another daemon holds it."""
    lock = os.fdopen(open_private(path), "r+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = describe_holder(lock.read())
        lock.close()
        raise AlreadyRunning(
            f"another fxgate daemon ({holder}) is using {what}; {advice}"
        ) from None
    lock.truncate()
    lock.write(holder_record(state_dir))
    lock.flush()
    return lock


def hold_socket_path(path: Path, state_dir: Path) -> IO[str]:
    """Make the socket path ours: a trusted dir, its lock held, a stale socket of ours removed.

    The lock is taken before anything at the path is touched, so a daemon
    never removes the socket of another that is serving.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        problem = socket_problem(path, _own_uids())
    except OSError as exc:
        raise ConfigError(f"not serving on {path}: {exc.strerror} ({exc.filename})") from None
    if problem is not None:
        raise ConfigError(f"not serving on {path}: {problem}")
    lock = hold(
        path.with_name(path.name + ".lock"),
        f"socket {path}",
        state_dir,
        "stop it first or choose another --address",
    )
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return lock
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        lock.close()
        raise ConfigError(f"{path} is there and is not a socket of this user's: remove it")
    path.unlink()  # a dead daemon's socket: its lock was free
    return lock
