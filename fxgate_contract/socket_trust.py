"""Who could have put a unix socket where the daemon's should be: the rule both sides apply.

A client unpickles what the daemon answers, so whoever can put a socket at
the daemon's path runs code as every client's user. A socket is trusted when
it and every directory above it belong to a trusted user (the process's own,
root, or the service user named in FXGATE_DAEMON_USER) and no one else can
write those directories. A sticky directory such as /tmp is fine above the
socket's directory (no one can rename another's entry in it), but not as the
socket's own directory: there anyone could bind a socket while the daemon is
down. Trust is judged on the directories, so it cannot change between the
check and a later reconnect. Standard library only: `fxgate status` and the
daemon use it without loading gRPC.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from fxgate_contract.errors import DaemonPermissionDenied, UntrustedSocket

DAEMON_USER_ENV = "FXGATE_DAEMON_USER"


def user_name(uid: int) -> str:
    """A uid as people read it: `name (uid N)`, or the bare number if it has no name."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def trusted_uids(env: Mapping[str, str] = os.environ) -> frozenset[int]:
    """This process's user, root (who can do anything to us anyway) and FXGATE_DAEMON_USER."""
    uids = {os.geteuid(), 0}
    named = env.get(DAEMON_USER_ENV, "").strip()
    if named.isascii() and named.isdigit():
        uids.add(int(named))
    elif named:
        try:
            uids.add(pwd.getpwnam(named).pw_uid)
        except KeyError:
            raise UntrustedSocket(f"{DAEMON_USER_ENV}={named}: there is no such user") from None
    return frozenset(uids)


def _directories(socket_path: Path) -> list[Path]:
    """The socket's directories, deepest first: as written and with symlinks resolved."""
    literal = Path(os.path.abspath(socket_path)).parent
    real = Path(os.path.realpath(literal))
    seen: list[Path] = []
    for d in [real, *real.parents, literal, *literal.parents]:
        if d not in seen:
            seen.append(d)
    return seen


def directory_problem(d: Path, uids: Iterable[int], *, sticky_ok: bool) -> str | None:
    """Why a directory cannot be trusted to hold the socket (None if it can)."""
    st = os.stat(d)
    if st.st_uid not in uids:
        return f"{d} belongs to {user_name(st.st_uid)}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (sticky_ok and st.st_mode & stat.S_ISVTX):
        who = "everyone" if st.st_mode & stat.S_IWOTH else "its group"
        return f"{d} is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def socket_problem(path: Path, uids: frozenset[int]) -> str | None:
    """Why a socket path cannot be trusted (None if it can); PermissionError if unreadable.

    The deepest existing directory is the socket's own (or would hold the
    missing ones): it gets no sticky-bit exception.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISLNK(st.st_mode):
            return f"{path} is a symlink (give the socket's real path)"
        if st.st_uid not in uids:
            return f"{path} belongs to {user_name(st.st_uid)}"
    deepest = True
    for d in _directories(path):
        try:
            problem = directory_problem(d, uids, sticky_ok=not deepest)
        except FileNotFoundError:
            continue
        if problem is not None:
            return problem
        deepest = False
    return None


def check_socket(path: Path, env: Mapping[str, str] = os.environ) -> None:
    """Refuse (before anything is sent) a socket someone untrusted could have put there."""
    try:
        problem = socket_problem(path, trusted_uids(env))
    except PermissionError as exc:
        raise permission_denied(path, exc) from None
    if problem is not None:
        raise UntrustedSocket(
            f"not talking to the fxgate socket {path}: {problem}, so someone other than you, "
            f"root or {DAEMON_USER_ENV} could have put it there. Serve the daemon from a "
            f"directory only its user can write, or set {DAEMON_USER_ENV} to the user the "
            "daemon runs as"
        )


def permission_denied(path: Path, exc: OSError) -> DaemonPermissionDenied:
    """The error for a daemon that is there but closed to this user."""
    try:
        owner = f" (the daemon runs as {user_name(os.lstat(path).st_uid)})"
    except OSError:
        owner = ""
    return DaemonPermissionDenied(
        f"permission denied on {path}: {exc.strerror}{owner}; its socket admits only the "
        "daemon's own user: run as that user, ask the daemon's owner for access, or start "
        "your own `fxgate serve`"
    )
