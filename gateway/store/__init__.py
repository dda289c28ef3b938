"""The daemon's durable state, one module per job.

- ``records``: the domain types (tasks, completions, events, groups) that the
  hub and the upstreams share with the store; no SQLAlchemy, so importing them
  loads no database code.
- ``tables``: the SQL schema (and the one column added since the first release).
- ``options``: task option sets, keyed by content, one shared object per set.
- ``sql``: small SQL helpers (IN-list chunks, executemany of a compiled
  statement, library errors converted to the daemon's).
- ``counters``: counts by upstream and state, of groups and of quarantined
  messages, kept in step with commits so ``fxgate status`` and the metrics
  cost nothing however large the store.
- ``group_upstreams``: each group's upstream, remembered by the writer so
  that counting tasks by upstream costs no query per task.
- ``writer``: the group-commit engine (one "store-writer" thread) and the
  ``Transaction`` each write receives; it times each commit for the metrics.
- ``writes`` and ``reads``: the operations, in SQL terms.
- ``database``: ``Store``, the facade the rest of the daemon uses.

This file imports nothing on purpose: ``gateway.store.records`` must load
without SQLAlchemy.
"""
