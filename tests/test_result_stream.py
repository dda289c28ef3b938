"""The result consumer's flow control, against the real broker.

Acknowledgements go out only after a commit, so the prefetch window must hold
more than one commit's worth of messages: otherwise the broker stops sending
for the whole of every commit and the stream runs stop-and-go.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future

import pika

from gateway.store.records import Completion
from gateway.upstreams.globus.results import GATHER_MAX, ResultStream
from tests.support.fake_globus import result_body
from tests.support.fixtures import rabbit  # noqa: F401
from tests.support.rabbitmq import RabbitNode

PREFIX = "fxtest.window."


def _publish(url: str, queue: str, count: int) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        channel.queue_declare(queue=queue, durable=True)
        channel.confirm_delivery()
        for _ in range(count):
            channel.basic_publish(
                "", queue, result_body(uuid.uuid4(), "00\ngASVAQAAAAAAAABLAS4=\n")
            )
    finally:
        conn.close()


def _queued(url: str, queue: str) -> int:
    """Messages in the queue, acknowledged ones excluded (unacked ones count)."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(conn.channel().queue_declare(queue=queue, passive=True).method.message_count)
    finally:
        conn.close()


def test_the_broker_keeps_sending_while_a_batch_commits(rabbit: RabbitNode) -> None:  # noqa: F811
    group = str(uuid.uuid4())
    queue = PREFIX + group
    sent = 3 * GATHER_MAX
    _publish(rabbit.url, queue, sent)
    batches: list[int] = []

    def commit_that_never_ends(completions: Sequence[Completion]) -> Future[list[Completion]]:
        batches.append(len(completions))
        return Future()

    stream = ResultStream(lambda: (rabbit.url, PREFIX))
    stream.watch(group)
    stream.start(commit_that_never_ends, lambda rows: Future())
    try:
        deadline = time.monotonic() + 60
        while stream.received < sent:  # with a window of one commit this stops at GATHER_MAX
            assert time.monotonic() < deadline, f"received {stream.received} of {sent}"
            time.sleep(0.01)
        assert sum(batches) == sent  # every message went to a commit, none acked yet
    finally:
        stream.stop()
    assert _queued(rabbit.url, queue) == sent  # nothing was acknowledged before its commit
