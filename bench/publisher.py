"""The separate process that publishes endpoint results to the broker, as an endpoint would.

Results must not come from the process that measures: a publisher sharing
the GIL with the fake web service or a client would slow both and blur the
clocks. This process reads (queue, upstream task id, serialized data) as JSON
lines, builds the raw messagepack Result bodies *before* the first publish,
and publishes them persistent, with no per-message confirm; one synchronous
round trip on the same channel at the end returns once the broker has
processed every publish before it.

Modes:
  burst   publish everything as fast as pika can; record the first and last publish time
  paced   sleep a random pause before each publish (random phase against any polling
          period); record each publish time
  stream  publish lines as they arrive on stdin (the orchestrator feeds tasks as the
          web service accepts them) until EOF

Publish times are time.time() taken just before basic_publish hands the message
to the socket, written as JSON to --times.

Run: python -m bench.publisher --url AMQP_URL --mode burst --input FILE --times OUT
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pika

from tests.support.fake_globus import result_body

PERSISTENT = pika.BasicProperties(delivery_mode=2)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_lines(stream: IO[str]) -> Iterator[tuple[str, str, bytes]]:
    """(queue, task id, body) per JSON line [queue, task_id, data]."""
    for line in stream:
        if line.strip():
            queue, task_id, data = json.loads(line)
            yield queue, task_id, result_body(task_id, data)


class Publisher:
    """One connection, one channel, no confirms; sync() is the round trip at the end."""

    def __init__(self, url: str) -> None:
        params = pika.URLParameters(url)
        params.heartbeat = 0  # stream mode may wait long on stdin between publishes
        self.conn = pika.BlockingConnection(params)
        self.channel = self.conn.channel()
        self.times: dict[str, float] = {}
        self.count = 0
        self.t_first = 0.0
        self.t_last = 0.0
        self._last_queue = ""
        self.cpu_first = 0.0

    def publish(self, queue: str, task_id: str, body: bytes) -> None:
        now = time.time()
        if self.count == 0:
            self.cpu_first = cpu_s()
        self.channel.basic_publish("", queue, body, properties=PERSISTENT)
        if self.count == 0:
            self.t_first = now
        self.t_last = now
        self.times[task_id] = now
        self.count += 1
        self._last_queue = queue

    def publish_all(self, items: Iterable[tuple[str, str, bytes]]) -> None:
        for item in items:
            self.publish(*item)
        self.sync()

    def sync(self) -> None:
        """A round trip on the publishing channel: the broker has processed every publish."""
        if self._last_queue:
            self.channel.queue_declare(self._last_queue, passive=True)

    def close(self) -> None:
        self.conn.close()

    def report(self, with_times: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "t_first": self.t_first, "t_last": self.t_last}
        out["cpu_s"] = cpu_s() - self.cpu_first  # while publishing, not building the bodies
        if with_times:
            out["times"] = self.times
        return out


def paced(
    items: list[tuple[str, str, bytes]], gap: tuple[float, float], seed: int
) -> Iterator[tuple[str, str, bytes]]:
    """Yield items one at a time after a random pause each."""
    rng = random.Random(seed)
    for item in items:
        time.sleep(rng.uniform(*gap))
        yield item


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.publisher", description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--mode", choices=("burst", "paced", "stream"), required=True)
    ap.add_argument("--input", default="-", help="JSON lines file, or - for stdin")
    ap.add_argument("--times", required=True, type=Path, help="where to write publish times")
    ap.add_argument("--gap", type=float, nargs=2, default=(0.02, 0.12), metavar=("LO", "HI"))
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)

    pub = Publisher(args.url)
    try:
        if args.mode == "stream":
            pub.publish_all(read_lines(sys.stdin))
        else:
            with open(args.input) if args.input != "-" else sys.stdin as stream:
                items = list(read_lines(stream))  # every body built before the first publish
            if args.mode == "paced":
                pub.publish_all(paced(items, tuple(args.gap), args.seed))
            else:
                pub.publish_all(items)
    finally:
        pub.close()
    args.times.write_text(json.dumps(pub.report(with_times=args.mode == "paced")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
