"""What the database can hold, as types for what comes from outside.

A value from a request that ends in a column or a query must fit the column, or the
database refuses it and the request fails with a 500: PostgreSQL's `integer` ends at
2**31 - 1 (every serial id is one), text cannot hold a NUL character, and an aware
datetime near the ends of Python's range overflows when it is moved to UTC. These types
say so where the value enters (request models, query and path parameters), so the
caller gets a 422 naming the field instead:

    message_id: RowId
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)]
    name: BoundedText  (or Annotated[BoundedText, Field(max_length=200)])
    since: DbDatetime

Each bound is in the OpenAPI document (`maximum`, `pattern`), so clients see it too.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

#: PostgreSQL's `integer`: every serial id, and every plain int column.
INT4_MAX = 2**31 - 1
#: PostgreSQL's `bigint` (the presence events' ids).
INT8_MAX = 2**63 - 1
#: Paging by offset goes this far (past it, narrow the query instead).
MAX_OFFSET = 1_000_000
#: Datetimes outside these years are no date anything in Vitrina is about; inside them
#: every conversion (to UTC, to a local time zone, a day added) stays in range.
MIN_YEAR, MAX_YEAR = 1900, 2999

#: A database row's id (a serial `integer`).
RowId = Annotated[int, Field(ge=1, le=INT4_MAX)]
#: A `bigint` row id (presence events).
BigRowId = Annotated[int, Field(ge=1, le=INT8_MAX)]
#: An offset into a page of results.
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET)]
#: What a `text` column holds: anything but NUL. Give it a `max_length` where it is
#: declared (`Annotated[BoundedText, Field(max_length=200)]`).
NO_NUL_PATTERN = r"^[^\x00]*$"
BoundedText = Annotated[str, StringConstraints(pattern=NO_NUL_PATTERN)]


def _datetime_in_range(value: datetime) -> datetime:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return value


def _date_in_range(value: date) -> date:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return value


#: An aware datetime the database and every conversion can hold.
DbDatetime = Annotated[AwareDatetime, AfterValidator(_datetime_in_range)]
#: A date the database and every conversion can hold.
DbDate = Annotated[date, AfterValidator(_date_in_range)]
