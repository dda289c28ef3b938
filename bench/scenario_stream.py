"""Scenario (a), live stream: N results published at once, how soon are all futures done?

Each system gets its own task group of N tasks, submitted and accepted
upstream before anything is published; then one publisher process publishes
all N results as fast as it can. Measured from the first publish to the last
future done at the client (fxgate: through the daemon's one AMQP connection,
commit and gRPC stream; SDK: its Executor's own AMQP watcher), and for the
broker limit from the first publish to the last message a plain pika consumer
received. Also the tail: last publish to last future done.

A 20,000-result stream lasts about a second, and on a small machine how fast
the publisher happens to run moves every number by ±15 %; so each system runs
several rounds, interleaved (fxgate, SDK, raw, fxgate, ...), and each number
reported is the median of its rounds. Every round is listed under the table.
"""

from __future__ import annotations

import os
import statistics
import uuid
from typing import Any

from bench.env import BenchEnv
from bench.flows import NAN, rate, submit_then_publish
from bench.plan import publish
from bench.procs import cpu_s, read_json
from bench.report import Outcome, Row, ratio
from bench.sizes import Scale
from fxgate_contract.serialize import serialize_data


def _client(env: BenchEnv, kind: str, n: int) -> dict[str, Any]:
    daemon = env.daemon("a-daemon") if kind == "fxgate" else None
    r = submit_then_publish(env, f"a-{kind}", kind, n, daemon=daemon)
    if daemon is not None:
        env.stop_daemon(daemon)
    last = r.out.get("t_last_done")
    return {
        "rate": rate(n, r.pub["t_first"], last),
        "tail_ms": (last - r.pub["t_last"]) * 1000 if last else NAN,
        "publish_s": r.pub["t_last"] - r.pub["t_first"],
        "cpu_receive_s": r.cpu["client"] + r.cpu.get("daemon", 0.0),
        "cpu_stage_s": r.cpu["broker"] + r.cpu["publisher"],
        "cpu": r.cpu,
        "correct": bool(r.out.get("correct")),
        "errors": r.out.get("errors", []),
    }


def _raw(env: BenchEnv, n: int) -> dict[str, Any]:
    """The same N messages through the same publisher to a plain pika consumer."""
    queue = f"bench.raw.{uuid.uuid4()}"
    env.declare_queue(queue)
    stats = env.workdir / "out" / "a-raw.json"
    stats.parent.mkdir(parents=True, exist_ok=True)
    args = ["--url", env.rabbit.url, "--queue", queue, "--count", str(n), "--out", str(stats)]
    consumer = env.procs.spawn("a-raw-consumer", "bench.raw_consumer", args, stdout=-1)
    assert consumer.stdout is not None
    if consumer.stdout.readline().strip() != "READY":
        raise RuntimeError(f"raw consumer did not start:\n{env.procs.tail('a-raw-consumer')}")
    lines = ((queue, str(uuid.uuid4()), serialize_data(2 * i)) for i in range(n))
    broker = cpu_s(env.broker_pid)
    pub = publish(env, "a-raw-publisher", lines)
    env.procs.finish("a-raw-consumer", consumer, timeout=600)
    broker = cpu_s(env.broker_pid) - broker
    got = read_json(stats)
    env.declare_queue(queue, delete=True)
    cpu = {"broker": broker, "publisher": pub["cpu_s"], "client": got["cpu_s"]}
    return {
        "rate": rate(n, pub["t_first"], got["t_last"]),
        "tail_ms": (got["t_last"] - pub["t_last"]) * 1000,
        "publish_s": pub["t_last"] - pub["t_first"],
        "cpu_receive_s": got["cpu_s"],
        "cpu_stage_s": broker + pub["cpu_s"],
        "cpu": cpu,
        "correct": got["count"] == n,
        "errors": [] if got["count"] == n else [f"raw consumer got {got['count']} of {n}"],
    }


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each number the median of the rounds; correct only if every round was."""
    out = dict(rounds[-1])
    for key in ("rate", "tail_ms", "publish_s", "cpu_receive_s", "cpu_stage_s"):
        out[key] = statistics.median(r[key] for r in rounds)
    out["correct"] = all(r["correct"] for r in rounds)
    out["errors"] = [e for r in rounds for e in r["errors"]]
    out["rounds"] = [{k: r[k] for k in ("rate", "tail_ms", "publish_s")} for r in rounds]
    return out


def _round_text(r: dict[str, Any]) -> str:
    return f"{r['rate']:,.0f} / {r['tail_ms']:.0f} / {r['publish_s']:.2f}"


def run(env: BenchEnv, scale: Scale) -> Outcome:
    n = scale.stream_tasks
    rounds: dict[str, list[dict[str, Any]]] = {"fxgate": [], "sdk": [], "raw": []}
    for _ in range(scale.stream_rounds):
        rounds["fxgate"].append(_client(env, "fxgate", n))
        rounds["sdk"].append(_client(env, "sdk", n))
        rounds["raw"].append(_raw(env, n))
    fx, sdk, raw = (_median(rounds[k]) for k in ("fxgate", "sdk", "raw"))
    rows = [
        Row(
            f"results/s, first publish → last future done ({n:,} results)",
            fx["rate"],
            sdk["rate"],
            raw["rate"],
            ratio=f"{ratio(fx['rate'], sdk['rate'])} SDK; {ratio(fx['rate'], raw['rate'])} raw",
            goal="≥ SDK and ≥ 0.7x raw",
            met=fx["rate"] >= sdk["rate"] and fx["rate"] >= 0.7 * raw["rate"],
        ),
        Row(
            "ms, last publish → last future done",
            fx["tail_ms"],
            sdk["tail_ms"],
            raw["tail_ms"],
            ratio=ratio(fx["tail_ms"], sdk["tail_ms"]) + " SDK",
            goal="≤ 100 ms",
            met=fx["tail_ms"] <= 100,
        ),
        Row(
            "s the publisher took to publish all (same program each time)",
            fx["publish_s"],
            sdk["publish_s"],
            raw["publish_s"],
        ),
        Row(
            "CPU s of the receiving side (fxgate: daemon + client; SDK: its script; "
            "raw: the consumer)",
            fx["cpu_receive_s"],
            sdk["cpu_receive_s"],
            raw["cpu_receive_s"],
            ratio=ratio(fx["cpu_receive_s"], sdk["cpu_receive_s"]) + " SDK",
        ),
        Row(
            "CPU s of the shared stage meanwhile (broker + publisher)",
            fx["cpu_stage_s"],
            sdk["cpu_stage_s"],
            raw["cpu_stage_s"],
        ),
    ]
    cores = os.cpu_count() or 1
    for r in (fx, sdk, raw):
        wall = n / r["rate"] if r["rate"] > 0 else NAN
        r["cores_busy"] = (r["cpu_receive_s"] + r["cpu_stage_s"]) / (wall * cores)
    correct = fx["correct"] and sdk["correct"] and raw["correct"]
    details = {"fxgate": fx, "sdk": sdk, "raw": raw, "tasks": n}
    if not correct:
        details["errors"] = fx["errors"] + sdk["errors"] + raw["errors"]
    notes = [
        "CPU seconds are counted while the results stream: publisher and raw consumer from "
        "their first message, client scripts from all tasks accepted, each by its own "
        "getrusage; daemon and broker (psutil) from just before the publisher starts; on "
        f"{cores} cores the stream cannot take less wall time than the sum of both CPU rows "
        f"/ {cores}",
        f"cores busy during the stream: fxgate {fx['cores_busy']:.0%}, SDK "
        f"{sdk['cores_busy']:.0%}, raw {raw['cores_busy']:.0%}",
        f"median of {scale.stream_rounds} interleaved rounds; every round "
        "(results/s / tail ms / publisher s): "
        + "; ".join(
            f"{name} " + ", ".join(_round_text(r) for r in system["rounds"])
            for name, system in (("fxgate", fx), ("SDK", sdk), ("raw", raw))
        ),
    ]
    return Outcome("a", "live stream", rows, correct, details, notes)
