"""The broker's own limit for scenario (a): a plain pika consumer, nothing else.

It counts messages and acknowledges them in batches (one multiple-ack per
ACK_EVERY), with the same prefetch as fxgate's daemon, so the gap between its
rate and fxgate's is what fxgate spends on decoding, committing and streaming
results to the client. Prints READY once it consumes; writes the time of the
first and last message received (time.time()) to --out.

Run: python -m bench.raw_consumer --url AMQP_URL --queue Q --count N --out FILE
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import pika

ACK_EVERY = 100
PREFETCH = 1000


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return float(usage.ru_utime + usage.ru_stime)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.raw_consumer", description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--queue", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    conn = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=PREFETCH)
    state: dict[str, Any] = {
        "count": 0,
        "t_first": 0.0,
        "t_last": 0.0,
        "bytes": 0,
        "cpu_first": 0.0,
    }

    def on_message(ch: Any, method: Any, _props: Any, body: bytes) -> None:
        now = time.time()
        if state["count"] == 0:
            state["t_first"] = now
            state["cpu_first"] = cpu_s()
        state["count"] += 1
        state["bytes"] += len(body)
        state["t_last"] = now
        if state["count"] % ACK_EVERY == 0 or state["count"] >= args.count:
            ch.basic_ack(delivery_tag=method.delivery_tag, multiple=True)
        if state["count"] >= args.count:
            ch.stop_consuming()

    channel.basic_consume(queue=args.queue, on_message_callback=on_message)
    print("READY", flush=True)
    try:
        channel.start_consuming()
    finally:
        conn.close()
    state["cpu_s"] = cpu_s() - state["cpu_first"]  # while consuming
    args.out.write_text(json.dumps(state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
