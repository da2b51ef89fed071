"""Inserting many rows in one statement of fixed text.

On PostgreSQL the rows travel as one array per column and are unpacked by `unnest`, so
the statement is the same whatever the row count: parsed once, nothing to render per
row. SQLAlchemy's own batching of an executemany renders a statement with a placeholder
per value instead, which the driver then scans in Python; at a few hundred rows of a
dozen columns that scan costs more than the insert. Elsewhere (SQLite) the rows go as a
plain executemany.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Column, Connection, Table, Text, bindparam, cast, func, select
from sqlalchemy.dialects import postgresql, sqlite
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
    `returning` columns of the rows inserted, in no particular order."""
    if not rows:
        return []
    names = list(rows[0])
    if connection.dialect.name == "postgresql":
        statement: Any = postgresql.insert(table).from_select(
            names, select(*(_unnest(table.c[name], name) for name in names))
        )
        parameters: Any = {
            name: [_array_value(table.c[name], row[name]) for row in rows] for name in names
        }
    else:
        statement = sqlite.insert(table)
        parameters = [dict(row) for row in rows]
    if skip_conflicts_on:
        statement = statement.on_conflict_do_nothing(index_elements=list(skip_conflicts_on))
    if returning:
        statement = statement.returning(*returning)
        return [tuple(row) for row in connection.execute(statement, parameters)]
    connection.execute(statement, parameters)
    return []


def _unnest(column: Column[Any], name: str) -> ColumnElement[Any]:
    if isinstance(column.type, JSON):  # no array of json in and out of the driver: text
        values = func.unnest(bindparam(name, type_=postgresql.ARRAY(Text)))
        return cast(values, postgresql.JSON)
    return func.unnest(bindparam(name, type_=postgresql.ARRAY(column.type)))


def _array_value(column: Column[Any], value: Any) -> Any:
    if isinstance(column.type, JSON):
        return None if value is None else json.dumps(value)
    return value
