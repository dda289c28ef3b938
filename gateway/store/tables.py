"""The SQL schema of the daemon's durable state (SQLAlchemy Core tables).

Function code, payloads and results are stored as the opaque strings the
client sent or the upstream returned: the daemon never deserializes them.
Core tables, not ORM classes: every query is written in SQL terms anyway,
and the ORM would cost each query its per-execution setup and the daemon
~6 MB of memory.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)

METADATA = MetaData()

# Small facts about this store, such as the local endpoint's stable id.
META = Table(
    "meta",
    METADATA,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

GROUPS = Table(
    "task_groups",
    METADATA,
    Column("id", String(36), primary_key=True),
    Column("upstream", String(16), nullable=False),
    Column("endpoint_id", String(36), nullable=False),
    # The id the upstream assigned at the group's first submit (Globus only).
    Column("upstream_group_id", String(36), index=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False, index=True),
    # A name a person gave the group at its first submit (Executor(label=...)); NULL if none.
    Column("label", String(256)),
)

FUNCTIONS = Table(
    "functions",
    METADATA,
    Column("id", String(36), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("code", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    # What the client registered with the code, sent on to the service (records.FunctionRecord).
    Column("description", Text, nullable=False, server_default=""),
    Column("meta", Text, nullable=False, server_default=""),
)

# A function's id at one upstream, so it is registered there only once.
REGISTRATIONS = Table(
    "function_registrations",
    METADATA,
    Column("function_id", String(36), primary_key=True),
    Column("upstream_key", String(256), primary_key=True),
    Column("upstream_function_id", String(64), nullable=False),
)

TASKS = Table(
    "tasks",
    METADATA,
    Column("id", String(36), primary_key=True),
    Column("group_id", String(36), nullable=False),
    Column("endpoint_id", String(36), nullable=False),
    Column("function_id", String(36), nullable=False),
    Column("payload", Text),
    Column("result_serializers", Text, nullable=False, default=""),
    # TASK_OPTIONS.key of the task's options; "" when it has none.
    Column("options_key", String(64), nullable=False, default="", server_default=""),
    Column("state", Integer, nullable=False, index=True),
    # "<submit_id>:<index>": makes a retried Submit accept nothing twice.
    Column("submit_key", String(80), nullable=False, unique=True),
    Column("upstream_task_id", String(36), unique=True),
    Column("data", Text),
    Column("error_code", String(64), nullable=False, default=""),
    Column("error_message", Text, nullable=False, default=""),
    Column("exception", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("completed_at", Float),
    # Order of completion across the store; a watcher resumes after a seq.
    Column("seq", Integer),
    Index("ix_tasks_group_seq", "group_id", "seq"),
)

# What tasks tell their endpoint beside function and payload (records.TaskOptions),
# each distinct set once, under a SHA-256 of its content (store/options.py).
TASK_OPTIONS = Table(
    "task_options",
    METADATA,
    Column("key", String(64), primary_key=True),
    Column("user_endpoint_config", Text, nullable=False),
    Column("resource_specification", Text, nullable=False),
    Column("user_runtime", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# A broker message that could not be used, kept for a person to look at.
QUARANTINE = Table(
    "quarantine",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(256), nullable=False),
    Column("reason", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("received_at", Float, nullable=False),
)


# Columns added after a release: (table, column, its DDL). Existing rows get "".
ADDED_COLUMNS = (
    ("tasks", "options_key", "VARCHAR(64) NOT NULL DEFAULT ''"),
    ("functions", "description", "TEXT NOT NULL DEFAULT ''"),
    ("functions", "meta", "TEXT NOT NULL DEFAULT ''"),
    ("task_groups", "label", "VARCHAR(256)"),  # NULL: no label
)


def add_missing_columns(engine: Engine) -> None:
    """Give tables made by an older fxgate the columns added since (create_all won't).

    Runs at open, before the writer starts.
    """
    have = {
        table: {c["name"] for c in inspect(engine).get_columns(table)}
        for table, _, _ in ADDED_COLUMNS
    }
    with engine.begin() as conn:
        for table, column, ddl in ADDED_COLUMNS:
            if column not in have[table]:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
