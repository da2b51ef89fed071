"""`insert_rows` on SQLite and PostgreSQL: every column type the engine writes (text,
integers, booleans, aware timestamps, JSON, NULLs), conflicts skipped, ids returned; and
`update_rows`, its counterpart by key; and `one_of`, the IN condition whose statement
does not grow with its values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import StatementError
from sqlmodel import Session, SQLModel, col, select

from cloud.bulk import insert_rows, one_of, update_rows
from cloud.customers.crud import create_customer
from cloud.customers.models import Customer, CustomerCreate
from cloud.scenarios.models import Journey

NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
TABLE = SQLModel.metadata.tables[Journey.__tablename__]


def journey_row(customer_id: int, key: str, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "tenant": "shop", "scenario_key": "s", "scenario_version": 1,
        "customer_id": customer_id, "entry_key": key, "entry_kind": "cart.abandoned",
        "variant": None, "holdout": False, "status": "waiting", "step": "pause",
        "wake_at": NOW + timedelta(hours=1), "waiting_for": None, "started_at": NOW,
        "updated_at": NOW, "finished_at": None, "reason": None,
        "context": {"trigger": {"store": "s1", "amount": 12.5, "tags": ["a", "b"]}},
    }
    return {**row, **changes}


def test_rows_arrive_whole_and_conflicts_are_skipped(engine: Engine) -> None:
    with Session(engine) as session:
        customer = create_customer(session, tenant="shop", data=CustomerCreate(), now=NOW)
        assert customer.id is not None
        connection = session.connection()
        first = insert_rows(
            connection, TABLE,
            [journey_row(customer.id, "k1"),
             journey_row(customer.id, "k2", holdout=True, variant="b", context={})],
            skip_conflicts_on=["entry_key"], returning=[TABLE.c.id, TABLE.c.entry_key],
        )
        assert sorted(key for _id, key in first) == ["k1", "k2"]
        again = insert_rows(
            connection, TABLE,
            [journey_row(customer.id, "k2"), journey_row(customer.id, "k3")],
            skip_conflicts_on=["entry_key"], returning=[TABLE.c.entry_key],
        )
        assert again == [("k3",)]
        assert insert_rows(connection, TABLE, []) == []
        session.commit()
        stored = session.exec(select(Journey).order_by(col(Journey.entry_key))).all()
    assert [row.entry_key for row in stored] == ["k1", "k2", "k3"]
    one, two, _ = stored
    assert one.context == {"trigger": {"store": "s1", "amount": 12.5, "tags": ["a", "b"]}}
    assert (one.wake_at, one.started_at) == (NOW + timedelta(hours=1), NOW)
    assert (one.variant, one.holdout, one.finished_at) == (None, False, None)
    assert (two.variant, two.holdout, two.context) == ("b", True, {})
    assert {row_id for row_id, _key in first} == {one.id, two.id}


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with Session(engine) as session:
        customer = create_customer(session, tenant="shop", data=CustomerCreate(), now=NOW)
        assert customer.id is not None
        # SQLite's path goes through the column type, which SQLAlchemy's error wraps.
        with pytest.raises((ValueError, StatementError), match="naive datetime"):
            insert_rows(session.connection(), TABLE,
                        [journey_row(customer.id, "k1", started_at=NOW.replace(tzinfo=None))])


def test_one_of_matches_exactly_its_values_however_many(engine: Engine) -> None:
    """The statement is compiled once and cached: each execution must still bind its own
    values (of any length, none included), for integers and for text."""
    with Session(engine) as session:
        customers = [
            create_customer(session, tenant="shop", data=CustomerCreate(external_id=f"c{n}"),
                            now=NOW)
            for n in range(5)
        ]
        session.commit()
        ids = [customer.id for customer in customers if customer.id is not None]

        def found(values: Sequence[object], column: object = Customer.id) -> list[int]:
            query = select(Customer.id).where(one_of(session, column, values))
            return sorted(cid for cid in session.exec(query).all() if cid is not None)

        assert found([ids[0]]) == [ids[0]]
        assert found([ids[3], ids[1], 10_000]) == [ids[1], ids[3]]
        assert found([]) == []
        assert found(ids) == sorted(ids)
        assert found(["c2", "c4", "nobody"], Customer.external_id) == [ids[2], ids[4]]
        assert found(["o'brien", "c0"], Customer.external_id) == [ids[0]]


def test_update_rows_sets_each_row_by_its_key(engine: Engine) -> None:
    with Session(engine) as session:
        customer = create_customer(session, tenant="shop", data=CustomerCreate(), now=NOW)
        assert customer.id is not None
        connection = session.connection()
        ids = dict((key, row_id) for row_id, key in insert_rows(
            connection, TABLE, [journey_row(customer.id, key) for key in ("k1", "k2", "k3")],
            returning=[TABLE.c.id, TABLE.c.entry_key],
        ))
        later = NOW + timedelta(minutes=5)
        update_rows(connection, TABLE, [
            {"id": ids["k1"], "status": "done", "step": None, "wake_at": None,
             "finished_at": later, "context": {"messages": [7]}},
            {"id": ids["k3"], "status": "exited", "step": "pause", "wake_at": later,
             "finished_at": None, "context": {}},
        ], key="id")
        update_rows(connection, TABLE, [], key="id")
        session.commit()
        stored = {row.entry_key: row for row in session.exec(select(Journey)).all()}
    one, two, three = stored["k1"], stored["k2"], stored["k3"]
    assert (one.status, one.step, one.wake_at, one.finished_at, one.context) == (
        "done", None, None, later, {"messages": [7]})
    assert (two.status, two.step, two.wake_at) == ("waiting", "pause", NOW + timedelta(hours=1))
    assert (three.status, three.wake_at, three.context) == ("exited", later, {})
    assert (one.started_at, one.variant) == (NOW, None)  # columns not named stay
