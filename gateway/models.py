"""The SQL schema of the daemon's durable state (SQLAlchemy 2.x typed models).

Function code, payloads and results are stored as the opaque strings the
client sent or the upstream returned: the daemon never deserializes them.
"""

from __future__ import annotations

import enum

from sqlalchemy import Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class TaskState(enum.IntEnum):
    """The same numbers as fxgate.v1.TaskState in the proto."""

    ACCEPTED = 1
    SUBMITTED = 2
    RUNNING = 3
    SUCCESS = 4
    FAILED = 5
    CANCELLED = 6


UNFINISHED = (TaskState.ACCEPTED, TaskState.SUBMITTED, TaskState.RUNNING)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Small facts about this store, such as the local endpoint's stable id."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class TaskGroup(Base):
    __tablename__ = "task_groups"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    upstream: Mapped[str] = mapped_column(String(16))
    endpoint_id: Mapped[str] = mapped_column(String(36))
    # The id the upstream assigned at the group's first submit (Globus only).
    upstream_group_id: Mapped[str | None] = mapped_column(String(36), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float, index=True)


class Function(Base):
    __tablename__ = "functions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    code: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


class FunctionRegistration(Base):
    """A function's id at one upstream, so it is registered there only once."""

    __tablename__ = "function_registrations"
    function_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    upstream_key: Mapped[str] = mapped_column(String(256), primary_key=True)
    upstream_function_id: Mapped[str] = mapped_column(String(64))


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(36))
    endpoint_id: Mapped[str] = mapped_column(String(36))
    function_id: Mapped[str] = mapped_column(String(36))
    payload: Mapped[str | None] = mapped_column(Text)
    result_serializers: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[int] = mapped_column(Integer, index=True)
    # "<submit_id>:<index>": makes a retried Submit accept nothing twice.
    submit_key: Mapped[str] = mapped_column(String(80), unique=True)
    upstream_task_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    data: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str] = mapped_column(String(64), default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    exception: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    completed_at: Mapped[float | None] = mapped_column(Float)
    # Order of completion across the store; a watcher resumes after a seq.
    seq: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("ix_tasks_group_seq", "group_id", "seq"),)


class QuarantinedMessage(Base):
    """A broker message that could not be used, kept for a person to look at."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column()
    received_at: Mapped[float] = mapped_column(Float)
