"""fxgate vs the globus-compute-sdk Executor vs the raw broker, in one command (issue 5).

Starts a private RabbitMQ node and a fake Globus Compute web service (manual
mode), runs the scenarios a-g against both systems in this one run, prints a
markdown table and saves it with the raw numbers (JSON) and a latency chart
(PNG) under --out. Exits non-zero when any client saw a wrong or missing
result (never because a performance goal was missed).

Run:  python bench/compare.py [--scale full|small] [--only a,b,...] [--out bench/results]
"""

from __future__ import annotations

import os

# This process forks helpers while its own gRPC channels are open; they exec at once.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    scenario_latency,
    scenario_local,
    scenario_many,
    scenario_reattach,
    scenario_scale,
    scenario_stream,
    scenario_submit,
)
from bench.chart import latency_chart  # noqa: E402
from bench.env import BenchEnv  # noqa: E402
from bench.machine import git_state, header_lines, machine, versions  # noqa: E402
from bench.procs import ForeignCpu  # noqa: E402
from bench.report import Outcome, markdown  # noqa: E402
from bench.sizes import SCALES, Scale  # noqa: E402

Scenario = Callable[[BenchEnv, Scale], Outcome]
SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "a": ("live stream", scenario_stream.run),
    "b": ("latency", scenario_latency.run),
    "c": ("re-attach", scenario_reattach.run),
    "d": ("submit", scenario_submit.run),
    "e": ("scale", scenario_scale.run),
    "f": ("local upstream", scenario_local.run),
    "g": ("many scripts", scenario_many.run),
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_one(key: str, env: BenchEnv, scale: Scale) -> Outcome:
    title, fn = SCENARIOS[key]
    log(f"{key}. {title}: running")
    source = git_state()  # the code its daemons run (the work tree may change under a run)
    foreign = ForeignCpu()
    began = time.monotonic()
    try:
        outcome = fn(env, scale)
    except Exception as exc:  # noqa: BLE001 - the other scenarios still run
        log(f"{key}. {title}: FAILED: {exc!r}")
        detail = "".join(traceback.format_exception(exc))[-4000:]
        outcome = Outcome(key, title, [], False, {"errors": [detail]})
    outcome.seconds = time.monotonic() - began
    outcome.details["source"] = source
    other = foreign.seconds()
    outcome.details["foreign_cpu_s"] = other
    outcome.notes.append(
        f"other work on the machine used {other:.1f} CPU s during this scenario "
        f"({other / outcome.seconds:.0%} of one core over its {outcome.seconds:.0f} s)"
    )
    log(f"{key}. {title}: {outcome.seconds:.1f} s, correct={outcome.correct}")
    return outcome


def _plain(value: Any) -> Any:
    """JSON without NaN: NaN becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def save(
    out: Path, scale: Scale, header: list[str], outcomes: list[Outcome], meta: dict[str, Any]
) -> Path:
    date = datetime.now().strftime("%Y-%m-%d")
    suffix = "" if scale.name == "full" else f"-{scale.name}"
    chart = None
    latency = next((o for o in outcomes if o.key == "b" and o.correct), None)
    if latency is not None:
        chart = out / f"latency-{date}{suffix}.png"
        gap = latency.details["gap_s"]
        subtitle = (
            f"{date}, scale {scale.name}: one result published at a time after a random "
            f"{gap[0] * 1000:g}–{gap[1] * 1000:g} ms pause; {meta['machine']['cores']} cores"
        )
        latency_chart(latency.details["latencies_ms"], chart, subtitle)
    text = markdown(header, outcomes, chart.name if chart else None)
    print(text)
    md = out / f"{date}-{scale.name}.md"
    md.write_text(text)
    data = meta | {"scenarios": {o.key: dataclasses.asdict(o) for o in outcomes}}
    md.with_suffix(".json").write_text(json.dumps(_plain(data), indent=1))
    log(f"saved {md}, {md.with_suffix('.json').name}" + (f", {chart.name}" if chart else ""))
    return md


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/compare.py", description=__doc__)
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, e.g. a,b")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, databases)")
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenarios: {', '.join(unknown)}")
    scale = SCALES[args.scale]
    args.out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below
    command = "python bench/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    mach = machine()
    workdir = Path(tempfile.mkdtemp(prefix="fxbench-"))
    log(f"scale {scale.name}, scenarios {','.join(keys)}, work dir {workdir}")
    try:
        with BenchEnv(workdir) as env:
            node = env.rabbit
            log(f"broker {node.nodename} (data {node.data_dir}), fake {env.fake.base_url}")
            vers = versions(env.rabbit)
            outcomes = [run_one(k, env, scale) for k in keys]
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    load_end = [round(x, 2) for x in os.getloadavg()]
    date = datetime.now().strftime("%Y-%m-%d")
    header = header_lines(scale.name, date, command.strip(), mach, vers, load_end)
    sources = {o.key: o.details.get("source") for o in outcomes}
    if set(sources.values()) != {mach["git"]}:  # daemons started after a change ran new code
        changed = "; ".join(f"{k}: {s}" for k, s in sources.items() if s != mach["git"])
        header.insert(6, f"- fxgate source changed during the run; scenarios started on: {changed}")
    meta: dict[str, Any] = {"scale": dataclasses.asdict(scale), "machine": mach}
    meta["versions"] = vers
    meta |= {"command": command.strip(), "date": date, "load_end": load_end}
    save(args.out, scale, header, outcomes, meta)
    return 0 if all(o.correct for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
