"""Which upstream each task group belongs to, as the writer counts tasks by upstream and state.

A task row names its group, not its upstream; the counts by state that the
status document and the metrics show are kept per upstream, so a write that
moves tasks must know their groups' upstreams. Looking each one up would
cost a query per task; the writer instead remembers the groups it has seen
(a Submit names its group's upstream) and asks the database, once per batch,
only for groups it does not know (after a restart, or past the bound).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from gateway.store.sql import chunks
from gateway.store.tables import GROUPS

# Groups remembered at most (about 100 bytes each); past it the map starts over,
# and the groups still in use are read again, once per batch that needs them.
REMEMBERED_GROUPS = 10_000
# A group the database no longer has (released in between): its tasks' counts go here.
NO_UPSTREAM = ""


class GroupUpstreams:
    """group id -> upstream name; used on the store-writer thread only, so it has no lock."""

    def __init__(self, limit: int = REMEMBERED_GROUPS) -> None:
        self._limit = limit
        self._known: dict[str, str] = {}

    def remember(self, group_id: str, upstream: str) -> None:
        """A group's upstream, as committed (call after the commit that created it)."""
        if len(self._known) >= self._limit:
            self._known.clear()
        self._known[group_id] = upstream

    def forget(self, group_id: str) -> None:
        """A released group (call after the commit that deleted it)."""
        self._known.pop(group_id, None)

    def of(self, conn: Connection, group_ids: Iterable[str]) -> dict[str, str]:
        """The upstream of each group named, one query per chunk of groups not remembered."""
        wanted = set(group_ids)
        found = {g: self._known[g] for g in wanted if g in self._known}
        missing = sorted(wanted - found.keys())
        for part in chunks(missing):
            rows = conn.execute(select(GROUPS.c.id, GROUPS.c.upstream).where(GROUPS.c.id.in_(part)))
            for group_id, upstream in rows:
                found[group_id] = upstream
                self.remember(group_id, upstream)
        for group_id in missing:
            found.setdefault(group_id, NO_UPSTREAM)
        return found
