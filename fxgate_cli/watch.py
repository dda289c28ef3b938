"""`fxgate watch GROUP`: a group's progress, live, until its last task finishes.

Counts come from the group's summary once (ListTaskGroups), then move with
the Watch stream opened after the summary's last_seq: each completion the
stream sends is one the counts did not include (the daemon reads counts and
last_seq in one statement). SUBMITTED events (seq 0) say which tasks are at
their endpoint. A thread reads the stream into a queue; the main thread
draws, so plain lines keep coming while the stream is quiet. If the daemon
restarts, the stream is opened again after the last completion seen.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from typing import Any

import grpc

from client import listing
from client.connection import Connection, refused, transient
from client.tracking import Counts, ProgressView
from fxgate_cli.common import FAILED, OK, address_of, fail
from fxgate_contract._proto import gateway_pb2 as pb

# How long the main thread waits for stream news before drawing again.
TICK_S = 0.5
# A lost stream is opened again after this pause (the daemon may be restarting).
RECONNECT_S = 1.0


class GroupTally:
    """A group's counts, moved by its Watch events. Owned by the main thread."""

    def __init__(self, summary: dict[str, Any]) -> None:
        t = summary["tasks"]
        self.total: int = summary["total"]
        self.done: int = t["success"]
        self.failed: int = t["failed"] + t["cancelled"]
        self.last_seq: int = summary["last_seq"]
        self._running_at_start = t["submitted"] + t["running"]
        self._submitted: set[str] = set()  # ids at their endpoint, from SUBMITTED events
        self._finished: set[str] = set()  # ids finished since the watch began
        self.replayed = False  # the stream sent every SUBMITTED task it began with

    def apply(self, message: pb.WatchResponse) -> None:
        for e in message.events:
            if not e.seq:  # SUBMITTED: at the endpoint, not finished
                if e.task_id not in self._finished:
                    self._submitted.add(e.task_id)
                continue
            if e.seq <= self.last_seq:  # counted already (a stream opened again)
                continue
            self.last_seq = e.seq
            self._finished.add(e.task_id)
            self._submitted.discard(e.task_id)
            if e.state == pb.TASK_STATE_SUCCESS:
                self.done += 1
            else:
                self.failed += 1
        if message.replay_done:
            self.replayed = True

    def counts(self) -> Counts:
        finished = self.done + self.failed
        running = len(self._submitted) if self.replayed else self._running_at_start
        running = max(0, min(running, self.total - finished))
        pending = max(0, self.total - finished - running)
        return Counts(self.total, self.done, self.failed, running, pending)

    @property
    def complete(self) -> bool:
        return self.done + self.failed >= self.total


def _read_stream(
    conn: Connection, group: str, after_seq: int, out: queue.Queue[Any], calls: list[Any]
) -> None:
    """Runs on the watch-stream thread: every message (or the error that ended it) into out."""
    try:
        call = conn.stub.Watch(pb.WatchRequest(task_group_id=group, after_seq=after_seq))
        calls.append(call)
        for message in call:
            out.put(message)
        out.put(ConnectionError("the daemon ended the stream"))
    except grpc.RpcError as exc:
        out.put(exc)


class JsonLines(ProgressView):
    """`--json`: a JSON object a line where plain lines would be (counts, rate, eta_s)."""

    def __init__(self, group: str) -> None:
        super().__init__(group, file=sys.stdout, plain=True)

    def line(self, counts: Counts) -> str:
        rate = self.rate(counts)
        eta = (counts.total - counts.finished) / rate if rate else None
        doc = {"task_group_id": self.description, **vars(counts), "rate": rate or 0.0}
        return json.dumps(doc | {"eta_s": eta})


def _open(conn: Connection, group: str, after: int, news: queue.Queue[Any]) -> list[Any]:
    calls: list[Any] = []
    args = (conn, group, after, news, calls)
    threading.Thread(target=_read_stream, args=args, name="watch-stream", daemon=True).start()
    return calls


def follow(conn: Connection, summary: dict[str, Any], view: ProgressView) -> GroupTally:
    """Move the tally with the group's stream until every task finished; draw as it goes."""
    group = summary["task_group_id"]
    tally = GroupTally(summary)
    news: queue.Queue[Any] = queue.Queue()
    calls = _open(conn, group, tally.last_seq, news) if not tally.complete else []
    view.update(tally.counts())
    lost = False  # said so on stderr, and not heard from the daemon since
    try:
        while not tally.complete:
            try:
                item = news.get(timeout=TICK_S)
            except queue.Empty:
                view.update(tally.counts())
                continue
            if isinstance(item, pb.WatchResponse):
                tally.apply(item)
                lost = False
            else:  # the stream ended: open it again unless the daemon refused it
                if isinstance(item, grpc.RpcError) and not transient(item):
                    raise refused(item)
                if not lost:
                    reason = item.details() if isinstance(item, grpc.RpcError) else item
                    print(f"fxgate: lost the daemon ({reason}); reconnecting", file=sys.stderr)
                    lost = True
                time.sleep(RECONNECT_S)  # a pause between attempts, not a synchronization
                calls = _open(conn, group, tally.last_seq, news)
            if tally.complete:  # tasks may have joined the group since the summary
                tally.total = listing.task_group(conn, group)["total"]
            view.update(tally.counts())
    finally:
        for call in calls:
            call.cancel()
    return tally


def main(args: argparse.Namespace) -> int:
    """Watch until the group completes: 0 if every task succeeded, 1 otherwise."""
    conn = Connection(address_of(args))
    try:
        summary = listing.task_group(conn, args.group)
        group = summary["task_group_id"]
        label = summary["label"] or group
        if args.json:
            view: ProgressView = JsonLines(group)
        else:
            view = ProgressView(label, file=sys.stdout, plain=True if args.plain else None)
        try:
            tally = follow(conn, summary, view)
        finally:
            view.close()
    finally:
        conn.close()
    if tally.failed:
        return fail(f"task group {group}: {tally.failed} of {tally.total} tasks failed", FAILED)
    return OK
