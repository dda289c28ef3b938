"""In-memory fan-out of committed task events to the streams watching a group.

The store's writer publishes here after each commit, in seq order, so a
subscriber that registers before it reads its replay from the store misses
nothing: whatever it replayed, it skips live by seq.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from collections.abc import Iterable

from gateway.store import TaskEvent


class Subscription:
    """One watch stream's inbox of events for one group."""

    def __init__(self, hub: Hub, group_id: str) -> None:
        self.group_id = group_id
        self._hub = hub
        self._inbox: queue.SimpleQueue[list[TaskEvent] | None] = queue.SimpleQueue()

    def put(self, events: list[TaskEvent] | None) -> None:
        self._inbox.put(events)

    def next_batch(self, timeout: float) -> list[TaskEvent] | None:
        """Everything waiting, or [] after timeout; None once the hub closed."""
        try:
            first = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return []
        if first is None:
            return None
        batch = list(first)
        while True:
            try:
                more = self._inbox.get_nowait()
            except queue.Empty:
                return batch
            if more is None:
                self._inbox.put(None)
                return batch
            batch.extend(more)

    def close(self) -> None:
        self._hub.unsubscribe(self)


class Hub:
    """Routes each event to the subscriptions of its group."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._closed = False

    def subscribe(self, group_id: str) -> Subscription:
        sub = Subscription(self, group_id)
        with self._lock:
            if self._closed:
                sub.put(None)
            else:
                self._subs[group_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.group_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.group_id]

    def publish(self, events: Iterable[TaskEvent]) -> None:
        by_group: dict[str, list[TaskEvent]] = defaultdict(list)
        for e in events:
            by_group[e.group_id].append(e)
        with self._lock:
            targets = [(list(self._subs.get(g, ())), evs) for g, evs in by_group.items()]
        for subs, evs in targets:
            for sub in subs:
                sub.put(evs)

    def watcher_count(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subs.values())

    def close(self) -> None:
        """End every stream (daemon shutdown)."""
        with self._lock:
            self._closed = True
            subs = [s for group in self._subs.values() for s in group]
            self._subs.clear()
        for sub in subs:
            sub.put(None)
