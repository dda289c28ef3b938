"""The one AMQP(S) connection that streams every task group's result queue.

This is the only module that imports pika. One consumer (on its own channel,
so a missing queue closes only that channel) per task group with unfinished
tasks. A message is acknowledged only after what it carried is committed: a
result in the tasks table, anything unusable in the quarantine table. Acks of
a batch go out as one multiple-ack per channel, and never on a channel of an
earlier connection. The connection is rebuilt with backoff, with fresh
credentials from the web service each time.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from fxgate_contract.states import TaskState
from gateway.logids import ids
from gateway.loglimit import throttled
from gateway.store.records import Completion
from gateway.upstreams.base import BrokerMeasures, QuarantineFn, ResultSink

log = logging.getLogger(__name__)

# A successful result exactly as globus-compute-common's messagepack writes it
# (its field order, a canonical task id, no details): matched without building
# the JSON document. Any other form takes the JSON path, then messagepack.
_SUCCESS_BYTES = re.compile(
    rb'\x01\{"message_type":"result","data":\{"task_id":"'
    rb"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    rb'","data":"((?:[^"\\\x00-\x1f]++|\\.)*+)",'
    rb'"details":null,"error_details":null,"task_statuses":null\}\}\Z'
)
# Past this size the regex loses to the JSON parser (escapes are matched one by one).
EXACT_MATCH_BYTES = 64 * 1024

# What the broker lists as this connection's name.
CONNECTION_NAME = "fxgate results"
# A result message larger than this is kept in quarantine, not stored as a result.
MAX_MESSAGE_BYTES = 12 * 1024 * 1024
# Gathering for one commit stops once this many messages wait (the last socket
# read may bring a few hundred more).
GATHER_MAX = 1000
# How many commits a result for an unknown task waits for its submit answer.
MAX_HOLDS = 50
# ... and is looked at again at least this often before it counts as unknown.
MIN_HOLDS = 2


@dataclass(slots=True, eq=False)  # one a message; compared by identity
class Delivery:
    """One message as received, until it is committed and acknowledged."""

    channel: Any
    generation: int
    tag: int
    queue: str
    body: bytes
    timestamp: float | None
    completion: Completion | None = None
    problem: str = ""
    retries: int = 0


def decode(body: bytes, timestamp: float | None) -> tuple[Completion | None, str]:
    """A Completion from a Result message, or None and why it cannot be used."""
    if len(body) > MAX_MESSAGE_BYTES:
        return None, f"message of {len(body)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit"
    fast = _decode_plain_result(body, timestamp)
    if fast is not None:
        return fast, ""
    # Imported on first need: pydantic models cost the daemon ~8 MB of memory.
    from globus_compute_common import messagepack
    from globus_compute_common.messagepack.message_types import Result

    try:
        message = messagepack.unpack(body)
    except Exception as exc:  # noqa: BLE001 - any garbage is quarantined
        return None, f"undecodable message: {type(exc).__name__}: {str(exc)[:300]}"
    if not isinstance(message, Result):
        return None, f"not a result message: {type(message).__name__}"
    details = message.error_details
    return _completion(
        str(message.task_id),
        message.data,
        details.code if details is not None else None,
        details.user_message if details is not None else "",
        timestamp,
    ), ""


def _completion(
    task_id: str, data: str, error_code: str | None, message: str, timestamp: float | None
) -> Completion:
    return Completion(
        state=TaskState.FAILED if error_code is not None else TaskState.SUCCESS,
        data=data,
        upstream_task_id=task_id,
        error_code=error_code or "",
        error_message=message,
        completed_at=timestamp,
    )


def _json_string(raw: bytes) -> str:
    """The text of a JSON string's body; serialized data escapes only newlines, commonly."""
    if b"\\" not in raw:
        return raw.decode()
    if b"\\\\" not in raw and raw.count(b"\\") == raw.count(b"\\n"):
        return raw.replace(b"\\n", b"\n").decode()  # every backslash starts a \n
    text: str = json.loads(b'"' + raw + b'"')
    return text


def _decode_plain_result(body: bytes, timestamp: float | None) -> Completion | None:
    """The common case without pydantic: a v1 envelope holding a well-formed result.

    Anything unusual returns None, and globus-compute-common's messagepack
    decides (and explains) instead; so this accepts nothing the library
    would refuse that matters here: the task id, the data and the error.
    """
    if body[:1] != b"\x01":
        return None
    exact = _SUCCESS_BYTES.match(body) if len(body) <= EXACT_MATCH_BYTES else None
    if exact is not None:  # 60% of the JSON path's cost; same answer
        try:
            data = _json_string(exact[2])
        except ValueError:  # not UTF-8, or a bad escape: the library explains why
            return None
        return _completion(exact[1].decode(), data, None, "", timestamp)
    try:
        envelope = json.loads(body[1:])
        if envelope.get("message_type") != "result":
            return None
        data = envelope["data"]
        task_id = str(uuid.UUID(data["task_id"]))
        payload = data["data"]
        details = data.get("error_details")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if not isinstance(payload, str):
        return None
    if details is None:
        return _completion(task_id, payload, None, "", timestamp)
    if not isinstance(details, dict):
        return None
    code, message = details.get("code"), details.get("user_message")
    if not isinstance(code, str) or not isinstance(message, str):
        return None
    return _completion(task_id, payload, code, message, timestamp)


class ResultStream:
    """Consumes result queues on one connection and commits before it acknowledges."""

    def __init__(
        self,
        connect_info: Callable[[], tuple[str, str]],
        *,
        prefetch: int = 4 * GATHER_MAX,
    ) -> None:
        self._connect_info = connect_info
        self._prefetch = prefetch
        # Given at start; called on the amqp-results thread only.
        self._complete: ResultSink | None = None
        self._quarantine: QuarantineFn | None = None
        self._submits_in_flight: Callable[[], bool] = lambda: False
        # _wanted and _consumers are shared with the callers of watch/unwatch/watched
        # under _lock; the rest below belongs to the amqp-results thread.
        self._lock = threading.Lock()
        self._wanted: set[str] = set()
        self._consumers: dict[str, Any] = {}  # group id -> channel
        self._retry_at: dict[str, float] = {}  # group id -> when to try its queue again
        self._inbox: list[Delivery] = []
        self._held: list[Delivery] = []  # unknown task ids, waiting for a submit to commit
        # Per channel: tags that must not be covered by a multiple-ack yet.
        self._unsafe: dict[int, set[int]] = {}
        self._conn: Any = None
        self._prefix = ""
        self._generation = 0
        self._stop = threading.Event()
        self._connected = threading.Event()
        # Written by the amqp-results thread; read by any (describe, the poll fallback).
        self.down_since: float | None = time.monotonic()
        self.received = 0
        self.quarantined = 0
        self.acked = 0  # messages acknowledged
        self._thread = threading.Thread(target=self._run, name="amqp-results", daemon=True)

    # ------------------------------------------------------------ control
    def start(
        self,
        deliver: ResultSink,
        quarantine: QuarantineFn,
        submits_in_flight: Callable[[], bool] = lambda: False,
    ) -> None:
        """Begin consuming: results go to `deliver`, unusable messages to `quarantine`.

        Both are called on the amqp-results thread; a message is acknowledged
        once the future they return resolved (on the store's writer thread).
        """
        self._complete, self._quarantine = deliver, quarantine
        self._submits_in_flight = submits_in_flight
        self._thread.start()

    def stop(self) -> None:
        """End the thread, which closes the connection; also before or without start."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)

    def watch(self, upstream_group_id: str) -> None:
        """Consume this group's queue (idempotent; survives reconnects)."""
        with self._lock:
            self._wanted.add(upstream_group_id)

    def watched(self) -> set[str]:
        with self._lock:
            return set(self._wanted)

    def unwatch(self, upstream_group_id: str) -> None:
        with self._lock:
            self._wanted.discard(upstream_group_id)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def measures(self) -> BrokerMeasures:
        """Counts since start (plain ints the amqp-results thread writes; a moment's view)."""
        return BrokerMeasures(
            connected=self.connected,
            received=self.received,
            acked=self.acked,
            reconnects=max(self._generation - 1, 0),
        )

    # ---------------------------------------------------------- the loop
    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._connect()
                delay = 0.5
                self._serve()
            except Exception as exc:  # noqa: BLE001 - reconnect on anything
                # pika's exceptions often have no text: the type names the fault
                reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
                log.warning(
                    "result broker connection lost: %s; reconnecting in %.1f s", reason, delay
                )
            finally:
                self._disconnect()
            self._stop.wait(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 30.0)

    def _connect(self) -> None:
        url, self._prefix = self._connect_info()
        params = pika.URLParameters(url)
        params.heartbeat = params.heartbeat or 30
        params.blocked_connection_timeout = 300
        # Names the connection in the broker's listings (rabbitmqctl list_connections name).
        params.client_properties = {"connection_name": CONNECTION_NAME}
        self._conn = pika.BlockingConnection(params)
        self._generation += 1
        with self._lock:
            self._consumers.clear()
            self._retry_at.clear()
        self.down_since = None
        self._connected.set()
        log.info("result broker connected (%s)", params.host)

    def _disconnect(self) -> None:
        self._connected.clear()
        if self.down_since is None:
            self.down_since = time.monotonic()
        conn, self._conn = self._conn, None
        with self._lock:
            self._consumers.clear()
            # Unacknowledged messages are redelivered by the broker on the next
            # connection; forget them here so no stale tag is ever acked.
            self._inbox.clear()
            self._held.clear()
            self._unsafe.clear()
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is going away anyway
                pass

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._sync_consumers()
            self._conn.process_data_events(time_limit=0.02)
            self._gather()
            self._flush()

    def _gather(self) -> None:
        """While messages keep arriving, take them into this commit too.

        A commit (and its acks, callbacks and fan-out) has a fixed cost; a
        stream that outpaces the daemon is committed in batches of up to
        GATHER_MAX instead of one per socket read. A lone message is not held
        back: the first read that brings nothing new ends the gathering.
        """
        before = -1
        while before != len(self._inbox) and len(self._inbox) < GATHER_MAX:
            before = len(self._inbox)
            self._conn.process_data_events(time_limit=0)

    def _sync_consumers(self) -> None:
        now = time.monotonic()
        with self._lock:
            wanted = set(self._wanted)
            current = dict(self._consumers)
        for gid in wanted & current.keys():
            if not current[gid].is_open:  # closed by the broker: its unacked come back
                with self._lock:
                    self._consumers.pop(gid, None)
                del current[gid]
        for gid in wanted - current.keys():
            if self._retry_at.get(gid, 0) <= now:
                self._consume(gid)
        for gid in current.keys() - wanted:
            channel = current[gid]
            with self._lock:
                self._consumers.pop(gid, None)
            if channel.is_open:
                channel.close()

    def _consume(self, gid: str) -> None:
        queue = f"{self._prefix}{gid}"
        channel = self._conn.channel()
        channel.basic_qos(prefetch_count=self._prefetch)
        generation = self._generation

        def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
            ts = float(props.timestamp) if getattr(props, "timestamp", None) else None
            self._inbox.append(Delivery(ch, generation, method.delivery_tag, queue, body, ts))

        try:
            channel.basic_consume(queue=queue, on_message_callback=on_message)
        except pika.exceptions.ChannelClosedByBroker as exc:
            why = exc.reply_text
            log.info("result queue not available yet (%s); retrying", why, extra=ids(queue=queue))
            self._retry_at[gid] = time.monotonic() + 2.0
            return
        with self._lock:
            self._consumers[gid] = channel

    # ------------------------------------------------- commit, then ack
    def _flush(self) -> None:
        if not self._inbox and not self._held:
            return
        batch, self._inbox = self._inbox, []
        self.received += len(batch)  # held ones (offered again below) were counted before
        if not self._submits_in_flight():
            batch, self._held = self._held + batch, []
        for d in batch:
            if d.completion is None and not d.problem:
                d.completion, d.problem = decode(d.body, d.timestamp)
        good = [d for d in batch if d.completion is not None]
        bad = [d for d in batch if d.completion is None]
        if bad:
            self._keep(bad)  # queued before the results: committed before them
        assert self._complete is not None  # set at start, before the thread runs
        done = self._complete([d.completion for d in good if d.completion is not None])
        generation = self._generation

        def committed(fut: Future[list[Completion]]) -> None:
            try:
                unknown = {c.upstream_task_id for c in fut.result()}
            except Exception as exc:  # noqa: BLE001 - not acked: committed again later
                throttled(log).error(
                    "could not commit %d results: %s; trying again", len(good), exc
                )
                # The broker redelivers unacked messages only on a new channel:
                # left alone, these would wait for a reconnect that never comes.
                self._call_in_loop(lambda: self._retry(good + bad, generation))
                return
            self._call_in_loop(lambda: self._after_commit(good + bad, unknown, generation))

        # committed runs on the store-writer thread; pika is not thread-safe, so it
        # hands the acks back to this connection's own thread (_call_in_loop).
        done.add_done_callback(committed)

    def _keep(self, deliveries: list[Delivery]) -> Future[None]:
        """Quarantine unusable messages; they are acked once that committed."""
        for d in deliveries:
            log.warning("quarantined a message: %s", d.problem, extra=ids(queue=d.queue))
            self._unsafe.setdefault(id(d.channel), set()).add(d.tag)
        self.quarantined += len(deliveries)
        assert self._quarantine is not None  # set at start, before the thread runs
        return self._quarantine([(d.queue, d.problem, d.body) for d in deliveries])

    def _after_commit(
        self, deliveries: list[Delivery], unknown: set[str | None], generation: int
    ) -> None:
        """On the connection's thread: ack what is safe, hold or keep unknown results."""
        if generation != self._generation:
            return
        orphans = [
            d for d in deliveries if d.completion and d.completion.upstream_task_id in unknown
        ]
        lost = set(orphans)
        safe = [d for d in deliveries if d not in lost]
        # The result may have overtaken the submit answer that names its task:
        # hold it (unacked) and look again, always at least once after every
        # submit that was in flight has committed.
        limit = MAX_HOLDS if self._submits_in_flight() else MIN_HOLDS
        hold = [d for d in orphans if d.retries < limit]
        orphans = [d for d in orphans if d.retries >= limit]
        for d in hold:
            d.retries += 1
            self._unsafe.setdefault(id(d.channel), set()).add(d.tag)
        self._held.extend(hold)
        if orphans:
            for d in orphans:
                task = d.completion.upstream_task_id if d.completion else ""
                d.completion, d.problem = None, f"result for unknown task {task}"
            self._keep(orphans).add_done_callback(  # on store-writer; acks on amqp-results
                lambda f: (
                    self._call_in_loop(lambda: self._ack(orphans, generation))
                    if f.exception() is None
                    else self._call_in_loop(lambda: self._retry(orphans, generation))
                )
            )
        self._ack(safe, generation)

    def _retry(self, deliveries: list[Delivery], generation: int) -> None:
        """On the connection's thread: deliveries whose commit failed go to the next commit.

        The store's writer has already retried with backoff before failing, so
        this does not spin; a connection lost meanwhile redelivers them anyway.
        Their tags become unsafe: a later batch's multiple-ack must not cover
        them (that would ack a result never stored, and acking it again after
        its commit would make the broker close the channel). This runs before
        any later batch's acks: the writer fails a batch before it commits the next.
        """
        if generation != self._generation:
            return
        for d in deliveries:
            self._unsafe.setdefault(id(d.channel), set()).add(d.tag)
        self._inbox[:0] = deliveries

    def _ack(self, deliveries: list[Delivery], generation: int) -> None:
        """One multiple-ack per channel, unless a lower tag there is not safe to ack yet."""
        if generation != self._generation:
            return
        by_channel: dict[int, list[Delivery]] = {}
        for d in deliveries:
            if d.generation == generation:
                by_channel.setdefault(id(d.channel), []).append(d)
        for key, ds in by_channel.items():
            channel = ds[0].channel
            unsafe = self._unsafe.get(key, set())
            unsafe.difference_update(d.tag for d in ds)
            if not channel.is_open:
                continue
            top = max(d.tag for d in ds)
            self.acked += len(ds)
            if any(t < top for t in unsafe):
                for d in ds:
                    channel.basic_ack(delivery_tag=d.tag)
            else:
                channel.basic_ack(delivery_tag=top, multiple=True)

    def _call_in_loop(self, fn: Callable[[], None]) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.add_callback_threadsafe(fn)
        except Exception:  # noqa: BLE001 - connection gone: the broker redelivers
            pass
