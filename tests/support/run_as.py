"""The OS identity a private server runs as: its service user when we are root, else ourselves.

Debian's servers refuse or misbehave as root (initdb refuses outright; a
RabbitMQ node with a root-owned data dir never starts), so test helpers start
them as the user the Debian package created, owning their data dir.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunAs:
    uid: int | None
    gid: int | None

    @classmethod
    def service_user(cls, name: str) -> RunAs:
        """`name` when we are root (ourselves if there is no such user); else ourselves."""
        if os.geteuid() != 0:
            return cls(None, None)
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return cls(None, None)
        return cls(pw.pw_uid, pw.pw_gid)

    @property
    def is_root(self) -> bool:
        """Whether the server would run as root (we are root and found no service user)."""
        return self.uid is None and os.geteuid() == 0

    def chown_tree(self, root: Path) -> None:
        if self.uid is None or self.gid is None:
            return
        for path in [root, *root.rglob("*")]:
            os.chown(path, self.uid, self.gid)

    @property
    def process_kwargs(self) -> dict[str, object]:
        """subprocess arguments that switch to this identity (root's extra groups dropped)."""
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}
