"""What a scenario hands back, and the markdown table a person reads.

A scenario returns an `Outcome`: rows of (metric, fxgate, SDK or baseline,
raw pika, ratio, goal, met?), whether every result it checked was correct,
and its raw numbers for the JSON file. Goals are judged where the numbers are
made (in the scenario), so the table only formats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

Cell = float | str | None


@dataclass
class Row:
    metric: str
    fxgate: Cell
    sdk: Cell = None
    raw: Cell = None
    ratio: str = ""
    goal: str = ""
    met: bool | None = None


@dataclass
class Outcome:
    key: str
    title: str
    rows: list[Row]
    correct: bool
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def ratio(a: float | None, b: float | None) -> str:
    """a / b as "1.23x" (empty when either is missing or b is 0)."""
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return ""
    return f"{a / b:.2f}x"


def fmt(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "n/a"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def met_text(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: ""}[met]


def table(outcomes: list[Outcome]) -> str:
    lines = [
        "| scenario | metric | fxgate | SDK (or baseline) | raw pika | ratio | goal | met? |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for o in outcomes:
        for i, r in enumerate(o.rows):
            name = f"{o.key}. {o.title}" if i == 0 else ""
            cells = [name, r.metric, fmt(r.fxgate), fmt(r.sdk), fmt(r.raw), r.ratio, r.goal]
            lines.append("| " + " | ".join(cells + [met_text(r.met)]) + " |")
    return "\n".join(lines)


def goals_summary(outcomes: list[Outcome]) -> tuple[list[str], list[str]]:
    """(met, missed) as "a: metric (goal)" strings."""
    met: list[str] = []
    missed: list[str] = []
    for o in outcomes:
        for r in o.rows:
            if r.met is None:
                continue
            (met if r.met else missed).append(f"{o.key}: {r.metric} — goal {r.goal}")
    return met, missed


def markdown(header: list[str], outcomes: list[Outcome], chart_name: str | None) -> str:
    met, missed = goals_summary(outcomes)
    parts = ["\n".join(header), "", table(outcomes), ""]
    parts.append(f"Goals met: {len(met)}; missed: {len(missed)}.")
    if missed:
        parts += ["", "Missed:", *[f"- {m}" for m in missed]]
    correct = all(o.correct for o in outcomes)
    parts += ["", f"Every result checked by the clients was correct: {'yes' if correct else 'NO'}."]
    for o in outcomes:
        if not o.correct:
            parts.append(f"- {o.key}: {o.details.get('errors', 'see JSON')}")
    notes = [(o.key, n) for o in outcomes for n in o.notes]
    if notes:
        parts += ["", "Notes:", *[f"- {k}: {n}" for k, n in notes]]
    if chart_name:
        parts += ["", f"Latency distributions (scenario b): ![latency]({chart_name})"]
    return "\n".join(parts) + "\n"
