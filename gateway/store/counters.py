"""Counts of tasks by upstream and state, of groups and of quarantined messages, kept with commits.

``fxgate status`` reads them; counting rows in the database instead would
cost a scan of millions of tasks. The writer applies each committed
transaction's deltas; nothing else changes them after the store opened.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping

from fxgate_contract.states import TaskState

GROUPS_KEY = "groups"
QUARANTINE_KEY = "quarantined"
# Tasks of one upstream in one state, as (upstream name, state).
TaskKey = tuple[str, TaskState]
# A TaskKey, GROUPS_KEY or QUARANTINE_KEY. States are always TaskState members,
# never bare ints: an int would hide from states().
CountKey = TaskKey | str


class Counters:
    """The counts; written by the store-writer thread after a commit, read by any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[CountKey] = Counter()  # guarded by _lock

    def reset(self, counts: Mapping[CountKey, int]) -> None:
        """Start from counts read from the database (when the store opens)."""
        with self._lock:
            self._counts = Counter(counts)

    def apply(self, deltas: Mapping[CountKey, int]) -> None:
        """Add what one committed transaction changed."""
        with self._lock:
            self._counts.update(deltas)

    def states(self) -> dict[TaskState, int]:
        """Tasks by state (every upstream's), states with no task left out."""
        out: Counter[TaskState] = Counter()
        for (_, state), n in self.tasks().items():
            out[state] += n
        return {k: n for k, n in out.items() if n}

    def tasks(self) -> dict[TaskKey, int]:
        """Tasks by (upstream, state), pairs with no task left out."""
        with self._lock:
            return {k: n for k, n in self._counts.items() if isinstance(k, tuple) and n}

    def get(self, key: CountKey) -> int:
        """One count (GROUPS_KEY, QUARANTINE_KEY or a state)."""
        with self._lock:
            return self._counts[key]
