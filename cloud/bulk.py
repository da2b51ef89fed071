"""Inserting and updating many rows, and matching many values, in one statement of
fixed text.

On PostgreSQL the rows travel as one JSON document, unpacked by
`json_populate_recordset` into the table's own row type: one parameter whatever the row
count, encoded in compiled code (pydantic-core), and a statement parsed once. The
alternatives cost more in Python than the insert costs in the database: SQLAlchemy's
batched executemany renders a placeholder per value (which the driver then scans), and
one array per column has the driver escape every element in Python. Elsewhere (SQLite)
the rows go as a plain executemany.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pydantic_core
from sqlalchemy import (
    Column,
    Connection,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement


def insert_rows(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    skip_conflicts_on: Sequence[str] = (),
    returning: Sequence[Column[Any]] = (),
) -> list[tuple[Any, ...]]:
    """Insert `rows` (all with the same keys) into `table`; with `skip_conflicts_on`, rows
    conflicting on that unique key are left out (ON CONFLICT DO NOTHING). Returns the
    `returning` columns of the rows inserted, in no particular order.

    Datetimes must be aware, as `cloud.db.UtcDateTime` requires (ValueError otherwise)."""
    if not rows:
        return []
    row_type = _row_type(connection, table)
    statement = _insert_statement(
        table, tuple(rows[0]), tuple(skip_conflicts_on), tuple(returning), row_type=row_type
    )
    parameters: Any = (
        {"rows": _json_rows(rows)} if row_type else [dict(row) for row in rows]
    )
    result = connection.execute(statement, parameters)
    return [tuple(row) for row in result] if returning else []


def update_rows(
    connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]], *, key: str
) -> None:
    """Update rows of `table` (each row all columns to set plus `key`, all with the same
    keys) identified by their `key` column, in one statement on PostgreSQL (UPDATE ...
    FROM the rows as a record set) and an executemany elsewhere."""
    if not rows:
        return
    names = tuple(name for name in rows[0] if name != key)
    row_type = _row_type(connection, table)
    statement = _update_statement(table, key, names, row_type=row_type)
    if row_type:
        connection.execute(statement, {"rows": _json_rows(rows)})
        return
    # Parameters may not take the names of the columns they set (SQLAlchemy keeps those).
    connection.execute(
        statement, [{f"_{name}": row[name] for name in [key, *names]} for row in rows]
    )


#: Statements built per table and column list, and kept: a worker runs the same few
#: hundreds of times a second, and building one (and SQLAlchemy's cache key for it)
#: costs more Python than running it.
_STATEMENTS_KEPT = 256


@functools.lru_cache(maxsize=_STATEMENTS_KEPT)
def _insert_statement(
    table: Table, names: tuple[str, ...], skip_conflicts_on: tuple[str, ...],
    returning: tuple[Column[Any], ...], *, row_type: str | None,
) -> Any:
    statement: Any = (
        postgresql.insert(table).from_select(names, _recordset(row_type, names)) if row_type
        else sqlite.insert(table)
    )
    if skip_conflicts_on:
        statement = statement.on_conflict_do_nothing(index_elements=list(skip_conflicts_on))
    return statement.returning(*returning) if returning else statement


@functools.lru_cache(maxsize=_STATEMENTS_KEPT)
def _update_statement(
    table: Table, key: str, names: tuple[str, ...], *, row_type: str | None
) -> Any:
    if row_type:
        records = _records(row_type, (key, *names))
        return (update(table).where(table.c[key] == records.c[key])
                .values({name: records.c[name] for name in names}))
    return (update(table).where(table.c[key] == bindparam(f"_{key}"))
            .values({name: bindparam(f"_{name}") for name in names}))


def _row_type(connection: Connection, table: Table) -> str | None:
    """The table's row type as PostgreSQL names it; None elsewhere (no record sets)."""
    if connection.dialect.name != "postgresql":
        return None
    return str(connection.dialect.identifier_preparer.format_table(table))


def _recordset(row_type: str, names: Sequence[str]) -> Any:
    """SELECT <names> FROM json_populate_recordset(NULL::<row_type>, :rows)."""
    records = _records(row_type, names)
    return select(*(records.c[name] for name in names))


def _records(row_type: str, names: Sequence[str]) -> Any:
    """json_populate_recordset(NULL::<row_type>, :rows): the rows of the `rows` parameter
    as records of a table's own row type (its columns' types and input rules)."""
    return func.json_populate_recordset(
        literal_column(f"NULL::{row_type}"),
        cast(bindparam("rows", type_=Text), postgresql.JSON),
    ).table_valued(*names)


def _json_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as one JSON document, by pydantic-core's encoder: datetimes, dates,
    decimals and UUIDs as PostgreSQL's input functions read them, at a quarter of the
    standard library's cost with a Python fallback for each datetime.

    The rows of one call come from one builder, so the first row stands for the rest in
    what the encoder would write wrongly: naive datetimes (PostgreSQL would read them in
    the session's time zone) and bytes (bytea wants its own hex form)."""
    for value in rows[0].values():
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        if isinstance(value, bytes | bytearray | memoryview):
            raise TypeError("bytes cannot be inserted in bulk")
    return pydantic_core.to_json(rows).decode()


def one_of(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values`. On PostgreSQL as `column = ANY(:values)`, one array parameter,
    so the statement's text does not grow with the values: an IN list renders a
    placeholder per value, every length is a different statement, and for a few hundred
    ids expanding and scanning it costs more than the query. SQLite (the embedded
    database, small batches) takes the plain IN list."""
    items = list(values)
    expression = column.__clause_element__() if hasattr(column, "__clause_element__") else column
    matched: ColumnElement[bool]
    if session.get_bind().dialect.name == "postgresql":
        array = bindparam(None, items, type_=postgresql.ARRAY(expression.type), unique=True)
        matched = expression == any_(array)
    else:
        matched = expression.in_(items)
    return matched
