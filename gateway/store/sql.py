"""Small SQL helpers the reads and writes share.

IN (...) lists cut in chunks, an executemany that skips SQLAlchemy's per-row
parameter handling on the hot writes, and the one place where SQLAlchemy's
errors become the daemon's StoreUnavailable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeAlias, TypeVar

from sqlalchemy import BindParameter, Connection, Dialect, Row, bindparam
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from gateway.errors import StoreUnavailable

T = TypeVar("T")
# A result row of any columns, read by column name.
AnyRow: TypeAlias = Row[*tuple[Any, ...]]

# SQLite allows 32766 bound parameters; stay far below it in IN (...) lists.
CHUNK = 900


def binds(*names: str) -> dict[str, BindParameter[Any]]:
    """A bound parameter of the same name for each column, for statements compiled once."""
    return {n: bindparam(n) for n in names}


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items, for IN (...) lists."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def translate(exc: Exception) -> Exception:
    """The daemon's error for a database failure; any other exception stays as it is."""
    if isinstance(exc, OperationalError):
        return StoreUnavailable(f"database unavailable: {exc.orig}")
    if isinstance(exc, SQLAlchemyError):
        return StoreUnavailable(f"database error: {exc}")
    return exc


class CompiledStatements:
    """Hot statements compiled once for one dialect, run with executemany of plain tuples.

    SQLAlchemy's per-row parameter handling would cost as much as SQLite's own
    work; the hot columns need no conversion. Owned by the store-writer thread
    (only writes use it), so the cache needs no lock.
    """

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._compiled: dict[int, Any] = {}  # id of a module-level statement -> compiled

    def executemany(
        self, conn: Connection, stmt: Any, names: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> int:
        """Run `stmt` once per row (tuples in the order of `names`); the count of rows changed."""
        compiled = self._compiled.get(id(stmt))
        if compiled is None:
            compiled = self._compiled[id(stmt)] = stmt.compile(dialect=self._dialect)
        order = compiled.positiontup
        params: list[Any]
        if order is None:  # a named paramstyle (e.g. psycopg): dicts
            params = [dict(zip(names, r, strict=True)) for r in rows]
        elif list(order) == list(names):
            params = rows
        else:
            where = [names.index(k) for k in order]
            params = [tuple(r[i] for i in where) for r in rows]
        return int(conn.exec_driver_sql(str(compiled), params).rowcount)
