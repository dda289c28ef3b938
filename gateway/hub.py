"""In-memory fan-out of committed task events to the streams watching a group.

The store's writer publishes here after each commit, in seq order, so a
subscriber that registers before it reads its replay from the store misses
nothing: whatever it replayed, it skips live by seq.

Subscribers are watch streams on the gRPC server's event loop; the writer is a
thread. A subscription buffers events under a lock and wakes its stream only
when its buffer goes from empty to not empty, so a busy stream costs one
wake-up per batch it sends, not one per commit.

A stream whose client reads slowly or not at all must not cost the daemon
memory for every result it has not sent (100,000 results of 4 KB held 520 MB
for one stalled stream). So a buffer holds at most BUFFER_EVENTS events or
BUFFER_BYTES bytes; past that it drops what it holds and marks itself
behind, and its stream reads what it missed from the store (the truth; live
events only save a read) before it takes live events again.

Besides committed terminal events, the hub carries SUBMITTED events (seq 0)
that tell watchers a task's upstream id as soon as it is committed. The
store's replay by seq holds terminal events only: a stream reads the
SUBMITTED tasks once, when it begins (Gateway.watch), and one that falls
behind later drops the SUBMITTED events it held (the upstream ids still come
with each result, and from GetTaskGroup). RUNNING events (seq 0) travel the
same way.

A released group's streams end (end_group) after the events published before
the release, with the reason, so no client waits on a group that is gone.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Iterable

from gateway.errors import NotFound
from gateway.store.records import TaskEvent

# What one subscription buffers at most before it falls back to the store.
BUFFER_EVENTS = 4000
BUFFER_BYTES = 4 * 1024 * 1024
# Counted per buffered event beside its data (the object, ids, the list slot).
EVENT_OVERHEAD = 300


def event_bytes(e: TaskEvent) -> int:
    """About what an event costs in memory: its result, its error text, the object."""
    return len(e.data) + len(e.exception) + len(e.error_message) + EVENT_OVERHEAD


class Subscription:
    """One watch stream's inbox of events for one group.

    _pending, _size, _behind and _closed are shared by the writer thread
    (put) and the stream's event loop (next_batch), under _lock.
    """

    def __init__(self, hub: Hub, group_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.group_id = group_id
        self._hub = hub
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[TaskEvent] = []
        self._size = 0  # event_bytes of _pending
        self._behind = False  # events were dropped: the reader must read the store
        self._closed = False
        self._gone = ""  # why the group's stream ends (released), once it does
        self._ready = asyncio.Event()  # touched only on the loop

    def put(self, events: list[TaskEvent] | None, gone: str = "") -> None:
        """Add events (None: the stream ends; gone: because its group is gone); any thread."""
        with self._lock:
            wake = not self._pending and not self._behind and not self._closed
            if events is None:
                self._closed = True
                self._gone = gone
            elif not self._behind:
                self._pending.extend(events)
                self._size += sum(event_bytes(e) for e in events)
                if len(self._pending) > BUFFER_EVENTS or self._size > BUFFER_BYTES:
                    self._pending, self._size, self._behind = [], 0, True
        if wake:
            try:
                self._loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:  # the loop is gone: nobody is reading any more
                pass

    async def next_batch(self) -> tuple[list[TaskEvent], bool] | None:
        """(events, behind) as soon as there is something; None once the hub closed.

        Raises NotFound, after the events buffered before it, once the group was released.

        behind (with no events) means the buffer overflowed and was dropped:
        the reader must read from the store every event after the last one it
        sent. It reads after this call returned, so whatever was dropped was
        committed before that read began, and anything published since is
        buffered again (and skipped by seq if the read already had it).
        """
        while True:
            with self._lock:
                batch, behind = self._pending, self._behind
                self._pending, self._size, self._behind = [], 0, False
                closed, gone = self._closed, self._gone
                if not batch and not behind and not closed:
                    self._ready.clear()  # the next put() sets it again
            if batch or behind:
                return batch, behind
            if gone:
                raise NotFound(gone)
            if closed:
                return None
            await self._ready.wait()

    def close(self) -> None:
        self._hub.unsubscribe(self)


class Hub:
    """Routes each event to the subscriptions of its group."""

    def __init__(self) -> None:
        # _subs and _closed: changed by the grpc-loop (subscribe, unsubscribe) and at
        # shutdown (close), read by the store-writer thread (publish); under _lock.
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._closed = False

    def subscribe(self, group_id: str, loop: asyncio.AbstractEventLoop) -> Subscription:
        """A subscription whose reader runs on `loop`."""
        sub = Subscription(self, group_id, loop)
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

    def end_group(self, group_id: str, reason: str) -> None:
        """End every stream of a group that is gone (released), telling them why."""
        with self._lock:
            subs = list(self._subs.pop(group_id, ()))
        for sub in subs:
            sub.put(None, reason)

    def watched(self, group_id: str) -> bool:
        """Whether any stream watches the group now (any thread)."""
        with self._lock:
            return group_id in self._subs

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
