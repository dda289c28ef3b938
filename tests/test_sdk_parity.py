"""fxgate's Executor, ComputeFuture, Client and Batch against the Globus Compute SDK's.

fxgate promises that an SDK script runs with only its import changed. This
walks the public names and the parameters (inspect.signature) of the SDK's
four classes and fails on any that fxgate's counterpart neither implements
(same name; positional parameters with the same names in the same order;
keyword-only ones by name; *args and **kwargs where the SDK has them) nor
lists, with a reason, in the table of deliberate differences in
docs/sdk-parity.md.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PARITY_DOC = Path(__file__).resolve().parent.parent / "docs" / "sdk-parity.md"
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|([^|]*)\|([^|]*)\|\s*$")
POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def sdk_pairs() -> list[tuple[str, type, type]]:
    """(name, SDK class, fxgate class) for the four classes a script touches."""
    pytest.importorskip("globus_compute_sdk")
    from globus_compute_sdk import Client as SdkClient
    from globus_compute_sdk import Executor as SdkExecutor
    from globus_compute_sdk.sdk.asynchronous.compute_future import ComputeFuture as SdkFuture
    from globus_compute_sdk.sdk.batch import Batch as SdkBatch

    from client import Batch, Client, ComputeFuture, Executor

    return [
        ("Executor", SdkExecutor, Executor),
        ("ComputeFuture", SdkFuture, ComputeFuture),
        ("Client", SdkClient, Client),
        ("Batch", SdkBatch, Batch),
    ]


def read_table(text: str) -> dict[str, tuple[str, str]]:
    """SDK name -> (fxgate column, reason) from the markdown table rows."""
    rows: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        match = ROW.match(line.strip())
        if match:
            rows[match.group(1)] = (match.group(2).strip(), match.group(3).strip())
    return rows


def public_names(sdk: type) -> list[str]:
    """Names the SDK class itself defines (not its stdlib bases), public ones and __init__."""
    own = [c for c in sdk.__mro__ if c.__module__.startswith("globus_compute_sdk")]
    names = {n for c in own for n in vars(c) if not n.startswith("_") or n == "__init__"}
    return sorted(names)


def _function(cls: type, name: str) -> Callable[..., Any] | None:
    """The plain function behind a method of cls; None for anything else or nothing."""
    attr = inspect.getattr_static(cls, name, None)
    if isinstance(attr, (staticmethod, classmethod)):
        attr = attr.__func__
    return attr if inspect.isfunction(attr) else None


def parameter_gaps(label: str, sdk_fn: Callable[..., Any], ours: Callable[..., Any]) -> list[str]:
    """Keys ("Class.method(param)") of the SDK's parameters fxgate does not take the same way."""
    theirs = [p for p in inspect.signature(sdk_fn).parameters.values() if p.name != "self"]
    mine = [p for p in inspect.signature(ours).parameters.values() if p.name != "self"]
    mine_positional = [p.name for p in mine if p.kind in POSITIONAL]
    mine_by_kind = {p.kind for p in mine}
    mine_keywords = {p.name for p in mine if p.kind != inspect.Parameter.POSITIONAL_ONLY}
    gaps: list[str] = []
    for i, p in enumerate(q for q in theirs if q.kind in POSITIONAL):
        if i >= len(mine_positional) or mine_positional[i] != p.name:
            gaps.append(f"{label}({p.name})")
    for p in theirs:
        if p.kind == inspect.Parameter.KEYWORD_ONLY and p.name not in mine_keywords:
            gaps.append(f"{label}({p.name})")
        elif p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            if p.kind not in mine_by_kind:
                star = "*" if p.kind == inspect.Parameter.VAR_POSITIONAL else "**"
                gaps.append(f"{label}({star}{p.name})")
    return gaps


def gaps_of(cls_name: str, sdk: type, ours: type) -> list[str]:
    """Every name and parameter of the SDK class that fxgate's class does not match."""
    gaps: list[str] = []
    for name in public_names(sdk):
        key = cls_name if name == "__init__" else f"{cls_name}.{name}"
        if not hasattr(ours, name):
            gaps.append(key)
            continue
        sdk_fn, our_fn = _function(sdk, name), _function(ours, name)
        if sdk_fn is None:
            continue  # a property or constant: having the name is the match
        if our_fn is None:
            gaps.append(key)
            continue
        gaps += parameter_gaps(key, sdk_fn, our_fn)
    return gaps


def unexplained(gaps: list[str], table: dict[str, tuple[str, str]]) -> list[str]:
    """Gaps that no table row explains: a row for the gap itself, or for its whole name."""
    out = []
    for gap in gaps:
        row = table.get(gap) or table.get(gap.split("(", 1)[0])
        if row is None or not row[1]:
            out.append(gap)
    return out


def test_every_sdk_name_and_parameter_is_implemented_or_explained() -> None:
    table = read_table(PARITY_DOC.read_text())
    missing = [
        gap
        for cls_name, sdk, ours in sdk_pairs()
        for gap in unexplained(gaps_of(cls_name, sdk, ours), table)
    ]
    assert not missing, (
        "fxgate neither implements these SDK names/parameters nor explains them in "
        f"docs/sdk-parity.md: {missing}"
    )


def test_table_rows_say_what_fxgate_does_and_why() -> None:
    table = read_table(PARITY_DOC.read_text())
    assert len(table) > 10
    for name, (fxgate, reason) in table.items():
        assert fxgate and reason, f"row {name} needs both what fxgate does and why"


def test_not_offered_rows_raise_not_offered() -> None:
    """A name the table says fxgate does not offer is absent or raises NotOffered, saying why."""
    table = read_table(PARITY_DOC.read_text())
    classes = {cls_name: ours for cls_name, _, ours in sdk_pairs()}
    for name, (fxgate, _) in table.items():
        if not fxgate.startswith("not offered") or "(" in name:
            continue
        cls_name, _, attr = name.partition(".")
        fn = _function(classes[cls_name], attr)
        if fn is not None:
            assert "NotOffered" in inspect.getsource(fn), f"{name} should raise NotOffered"


def test_attribute_rows_are_attributes_fxgate_sets() -> None:
    """A name the table says is an instance attribute is assigned in fxgate's class."""
    table = read_table(PARITY_DOC.read_text())
    classes = {cls_name: ours for cls_name, _, ours in sdk_pairs()}
    for name, (fxgate, _) in table.items():
        if fxgate.startswith("attribute"):
            cls_name, _, attr = name.partition(".")
            source = inspect.getsource(classes[cls_name])
            assert re.search(rf"self\.{attr}\s*[:=]", source), f"{name} is not set by fxgate"


def test_the_walk_reports_what_a_counterpart_lacks() -> None:
    """The checker itself: a class lacking a method, a parameter and **kwargs is reported."""

    class Sdk:
        def __init__(self, endpoint_id: str, label: str = "", **kwargs: Any) -> None: ...

        def submit(self, fn: Any, *args: Any, **kwargs: Any) -> None: ...

        def reload_tasks(self, task_group_id: str | None = None) -> None: ...

    Sdk.__module__ = "globus_compute_sdk.fake"

    class Ours:
        def __init__(self, endpoint_id: str) -> None: ...

        def submit(self, fn: Any, *args: Any) -> None: ...

    gaps = gaps_of("X", Sdk, Ours)
    assert gaps == ["X(label)", "X(**kwargs)", "X.reload_tasks", "X.submit(**kwargs)"]
    table = {"X(label)": ("differs", "a reason"), "X.reload_tasks": ("not offered", "")}
    assert unexplained(gaps, table) == ["X(**kwargs)", "X.reload_tasks", "X.submit(**kwargs)"]
