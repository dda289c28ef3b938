"""The picture of scenario (b): publish-to-future latency, fxgate vs the SDK.

A person should see at a glance how far apart the two distributions are, so
both panels use a log x-axis (they differ by orders of magnitude): a histogram
on log-spaced bins, and the cumulative distribution with the p50/p99 goals.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

COLORS = {"fxgate": "#1f77b4", "SDK Executor": "#d62728"}


def latency_chart(latencies_ms: dict[str, list[float]], path: Path, subtitle: str) -> None:
    """Save a two-panel PNG of the latency samples per system (milliseconds)."""
    series = {k: np.asarray(v, dtype=float) for k, v in latencies_ms.items() if len(v)}
    lo = max(0.1, min(float(s.min()) for s in series.values()) * 0.8)
    hi = max(float(s.max()) for s in series.values()) * 1.25
    bins = np.geomspace(lo, hi, 50)
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    for name, s in series.items():
        color = COLORS.get(name)
        p50, p99 = np.percentile(s, [50, 99])
        label = f"{name}: p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={len(s)})"
        hist.hist(np.clip(s, lo, hi), bins=bins, alpha=0.6, color=color, label=label)
        xs = np.sort(s)
        ys = np.arange(1, len(xs) + 1) / len(xs)
        cdf.step(xs, ys, where="post", color=color, label=name, linewidth=2)
    for ax in (hist, cdf):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.set_xlabel("latency: result published → future done at the client (ms, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    cdf.axvline(5, color="green", linestyle="--", linewidth=1, label="goal p50 ≤ 5 ms")
    cdf.axvline(25, color="orange", linestyle="--", linewidth=1, label="goal p99 ≤ 25 ms")
    cdf.axhline(0.5, color="grey", linewidth=0.5)
    cdf.axhline(0.99, color="grey", linewidth=0.5)
    hist.set_ylabel("results")
    hist.set_title("distribution")
    cdf.set_ylabel("fraction of results done")
    cdf.set_title("cumulative")
    hist.legend(loc="upper center", fontsize=9)
    cdf.legend(loc="lower right", fontsize=9)
    fig.suptitle(f"Scenario b — result latency, fxgate vs globus-compute-sdk Executor\n{subtitle}")
    fig.savefig(path, dpi=110)
    plt.close(fig)
