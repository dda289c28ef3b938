"""A second local user for permission tests: created once, runs Python code as itself.

The tests run as root; what one user may do to another's daemon (plant a
socket, connect without permission) needs a real second uid. The checkout and
its virtualenv may sit where other users cannot enter (under /root), so that
user runs Debian's python3 (the same 3.11) on a readable copy of fxgate and of
the few packages its client needs, made once per test session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.run_as import RunAs

ROOT = Path(__file__).resolve().parent.parent.parent
NAME = "fxgate-other"
SYSTEM_PYTHON = Path("/usr/bin/python3")
# What the client and `fxgate status` import, beside fxgate's own packages.
CLIENT_PACKAGES = ("grpc", "google", "dill", "typing_extensions.py")


@dataclass(frozen=True)
class OtherUser:
    name: str
    uid: int
    gid: int
    code_dir: Path  # a readable copy of fxgate and its client's packages

    @classmethod
    def ensure(cls) -> OtherUser:
        """The test user, created with useradd the first time."""
        try:
            pw = pwd.getpwnam(NAME)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NAME],
                check=True,
                capture_output=True,
            )
            pw = pwd.getpwnam(NAME)
        return cls(NAME, pw.pw_uid, pw.pw_gid, _readable_copy())

    def popen(
        self, code: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Python code run as this user; stdin, stdout and stderr are pipes."""
        full_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(self.code_dir), **(env or {})}
        return subprocess.Popen(
            [str(SYSTEM_PYTHON), "-c", textwrap.dedent(code), *args],
            env=full_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
            **RunAs(self.uid, self.gid).process_kwargs,  # type: ignore[arg-type]
        )


def _readable_copy() -> Path:
    """fxgate's packages and its client's dependencies, in a 0755 dir every user can read."""
    dest = Path(tempfile.mkdtemp(prefix="fxtest-code-"))
    dest.chmod(0o755)
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("client", "fxgate_contract", "gateway"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    site = Path(sysconfig.get_paths()["purelib"])
    for name in CLIENT_PACKAGES:
        if (site / name).is_dir():
            shutil.copytree(site / name, dest / name, ignore=ignore)
        else:
            shutil.copy(site / name, dest / name)
    return dest


@pytest.fixture(scope="session")
def other_user() -> Iterator[OtherUser]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create and switch to a second user")
    if not SYSTEM_PYTHON.exists() or sys.version_info[:2] != (3, 11):
        pytest.skip("needs /usr/bin/python3 of the same version as the tests")
    user = OtherUser.ensure()
    yield user
    shutil.rmtree(user.code_dir, ignore_errors=True)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A root-owned 0755 directory in /tmp: every user can reach into it, only root writes."""
    path = Path(tempfile.mkdtemp(prefix="fxtest-shared-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
