"""Which fxgate task a Globus task id belongs to, for results that arrive in flight.

A result message names only the Globus task id. The upstream remembers, for
the tasks it submitted, upstream id -> (fxgate task id, group id), and hands
each result to the sink with both filled in: the store then finishes the task
without looking it up, on the condition that it is still SUBMITTED (measured
on bench/profile_stream.py: a lookup by task id cost the store-writer thread
about 20 us a result, nearly half its work). The map is only
a shortcut, never the truth: an id it lacks (evicted, submitted before a
restart, or arriving before its submit committed) passes through with the
upstream id alone, and the store looks it up.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from itertools import islice

from gateway.store.records import Completion

# Submitted tasks whose ids are kept, at most (the store's own cache held as many).
MAX_ENTRIES = 200_000


class TaskIds:
    """A bounded map upstream task id -> (task id, group id); the oldest entries go first.

    Filled by the globus-submit threads (after mark_submitted committed), read
    and emptied by the amqp-results and globus-poll threads: all under _lock.
    Bounded so that results which never come (a released group's tasks) cannot
    fill it for good: past the limit the oldest entries are dropped.
    """

    def __init__(self, limit: int = MAX_ENTRIES) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        # insertion order: oldest first; under _lock
        self._by_upstream: dict[str, tuple[str, str]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_upstream)

    def remember(self, submitted: Mapping[str, str], group_id: str) -> None:
        """Tasks of one group the store now holds as submitted: task id -> upstream task id."""
        with self._lock:
            self._by_upstream.update((up, (tid, group_id)) for tid, up in submitted.items())
            over = len(self._by_upstream) - self._limit
            if over > 0:
                for old in list(islice(self._by_upstream, over)):
                    del self._by_upstream[old]

    def resolve(self, completions: Sequence[Completion]) -> Sequence[Completion]:
        """Fill in the task and group of results named by upstream id (in place); each
        known id is forgotten as it is used: a task has one result."""
        with self._lock:
            for c in completions:
                if c.task_id is None and c.upstream_task_id is not None:
                    found = self._by_upstream.pop(c.upstream_task_id, None)
                    if found is not None:
                        c.task_id, c.group_id = found
        return completions
