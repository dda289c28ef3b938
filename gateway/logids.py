"""The ids a log line is about, given as ``extra=ids(group=..., task=...)`` at the call site.

One spelling everywhere, so `grep task=<id>` (text logs) or a query on the
`task` field (JSON logs, gateway/logs.py) finds every line about a task.
Standard library only: any daemon module may import it.
"""

from __future__ import annotations

# The id fields, in the order the text format appends them as key=value.
ID_FIELDS = ("group", "task", "function", "endpoint", "queue", "worker_pid")


def ids(**values: object) -> dict[str, object]:
    """The ``extra=`` of a log call: the ids the event is about (None ones left out)."""
    unknown = set(values) - set(ID_FIELDS)
    assert not unknown, f"not an id field: {unknown}"
    return {k: v for k, v in values.items() if v is not None}
