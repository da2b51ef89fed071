import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError
from sqlmodel import col, select

from cloud.commerce.models import Order, OrderLine
from cloud.db import (
    alembic_config,
    current_revision,
    downgrade,
    is_transient,
    make_engine,
    migrate,
    normalize_url,
    session_scope,
    wait_for_database,
    worker_engine,
)
from cloud.messages.models import Message
from cloud.presence.models import DeadLetter
from cloud.presence.partitions import include_name
from cloud.tables import metadata
from provisioning.local_broker import free_port

EXPECTED_TABLES = {
    "presence_event", "dead_letter", "gateway", "customer", "consent", "device",
    "identity_link", "message", "api_key",
}


def revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def test_upgrade_from_empty_creates_the_schema_the_models_describe(database_url: str) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES
        assert current_revision(engine) == revisions()[-1]
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_name": include_name}
            )
            assert compare_metadata(context, metadata) == []
        migrate(database_url)  # a second run is a no-op
    finally:
        engine.dispose()


def test_upgrade_from_the_previous_revision_keeps_data(database_url: str) -> None:
    chain = revisions()
    assert len(chain) >= 2
    migrate(database_url, chain[-2])
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO dead_letter (received_at, topic, reason, payload, payload_size,"
                     " truncated) VALUES (:at, 't', 'r', :payload, 3, :no)"),
                {"at": datetime(2026, 1, 1, tzinfo=UTC), "payload": b"abc", "no": False},
            )
        migrate(database_url)
        assert current_revision(engine) == chain[-1]
        with session_scope(engine) as session:
            letter = session.get(DeadLetter, 1)
            assert letter is not None
            assert letter.payload == b"abc"
        downgrade(database_url, chain[-2])
        assert current_revision(engine) == chain[-2]
        migrate(database_url)
        assert current_revision(engine) == chain[-1]
    finally:
        engine.dispose()


def test_datetimes_come_back_aware_and_in_utc(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    madrid = timezone(timedelta(hours=1))
    try:
        with session_scope(engine) as session:
            session.add(DeadLetter(
                received_at=datetime(2026, 1, 1, 11, 30, tzinfo=madrid), topic="t", reason="r",
                payload=b"", payload_size=0, truncated=False,
            ))
            session.commit()
        with session_scope(engine) as session:
            letter = session.get(DeadLetter, 1)
            assert letter is not None
            assert letter.received_at == datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
            assert letter.received_at.utcoffset() == timedelta(0)
        with session_scope(engine) as session:
            session.add(DeadLetter(
                received_at=datetime(2026, 1, 1), topic="t", reason="r", payload=b"",
                payload_size=0, truncated=False,
            ))
            with pytest.raises(StatementError, match="naive"):
                session.commit()
    finally:
        engine.dispose()


def test_wait_for_database_gives_up_with_the_driver_error() -> None:
    port = free_port()  # nothing listens there
    engine = make_engine(f"postgresql://postgres@127.0.0.1:{port}/nothing")
    try:
        with pytest.raises(OperationalError):
            wait_for_database(engine, timeout_s=0.5)
    finally:
        engine.dispose()


def test_wait_for_database_returns_when_reachable(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        wait_for_database(engine, timeout_s=5)
    finally:
        engine.dispose()


def test_transient_errors_are_told_apart_from_refused_data() -> None:
    assert is_transient(OperationalError("SELECT 1", {}, Exception("server closed")))
    assert not is_transient(IntegrityError("INSERT", {}, Exception("duplicate")))
    assert not is_transient(ValueError("bug"))


def _drop_pooled_connection(engine: Engine, admin: Engine) -> None:
    """Check a connection out and in (the pool keeps it), then have the server end it."""
    with engine.connect() as connection:
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with admin.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})


def test_a_worker_engine_pays_one_failed_transaction_for_a_dropped_connection(
    postgres_url: str,
) -> None:
    admin, worker, pinging = (
        make_engine(postgres_url), worker_engine(postgres_url), make_engine(postgres_url)
    )
    try:
        _drop_pooled_connection(pinging, admin)
        with pinging.connect() as connection:  # the ping found it dead and reconnected
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
        _drop_pooled_connection(worker, admin)
        with pytest.raises(OperationalError) as raised, worker.connect() as connection:
            connection.execute(text("SELECT 1"))
        assert is_transient(raised.value)
        with worker.connect() as connection:  # the pool was emptied: a new connection
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        for engine in (admin, worker, pinging):
            engine.dispose()


def test_plain_postgres_urls_use_psycopg_3() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_messages_queued_before_0015_get_their_journeys_consent_context(
    database_url: str,
) -> None:
    """Waiting messages queued by an earlier release are checked at send time from the
    message alone: the migration copies what the worker used to read from the journey."""
    migrate(database_url, "0014")
    engine = make_engine(database_url)
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO customer (id, tenant, attributes, created_at, updated_at)"
                " VALUES (1, 'shop', '{}', :at, :at)"), {"at": start})
            for journey_id, kind in ((1, "presence.enter"), (2, "newsletter.signup")):
                connection.execute(text(
                    "INSERT INTO journey (id, tenant, scenario_key, scenario_version,"
                    " customer_id, entry_key, entry_kind, holdout, status, started_at,"
                    " updated_at, context) VALUES (:id, 'shop', 's', 1, 1, :key, :kind,"
                    " :no, 'waiting', :at, :at, '{}')"),
                    {"id": journey_id, "key": f"k{journey_id}", "kind": kind, "no": False,
                     "at": start})
            queued: list[tuple[int, int | None, bool]] = [
                (1, 1, False), (2, 2, True), (3, 2, False), (4, None, True),
            ]
            for message_id, of_journey, transactional in queued:
                connection.execute(text(
                    "INSERT INTO message (id, tenant, customer_id, channel, rule,"
                    " transactional, idempotency_key, status, title, body, content,"
                    " created_at, journey_id, attempts) VALUES (:id, 'shop', 1, 'email', 'r',"
                    " :transactional, :key, 'pending', 't', 'b', '{}', :at, :journey, 0)"),
                    {"id": message_id, "transactional": transactional, "key": f"m{message_id}",
                     "at": start + timedelta(hours=1), "journey": of_journey})
        migrate(database_url)
        with session_scope(engine) as session:
            rows = session.exec(select(Message).order_by(col(Message.id))).all()
            found = [(row.id, row.location_based, row.consent_requested_at) for row in rows]
        assert found == [(1, True, None), (2, False, start), (3, False, None), (4, False, None)]
    finally:
        engine.dispose()


def test_0024_gives_every_customer_a_random_public_id_and_keeps_what_points_at_them(
    database_url: str,
) -> None:
    """Customers made before public ids get one each, distinct and not their number; on
    SQLite the customer table is altered in place, so nothing that cascades from it (a
    consent answer here) goes, on the way up or down."""
    migrate(database_url, "0023")
    engine = make_engine(database_url)
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    try:
        with engine.begin() as connection:
            for number in (1, 2, 3):
                connection.execute(text(
                    "INSERT INTO customer (id, tenant, attributes, created_at, updated_at)"
                    " VALUES (:id, 'shop', '{}', :at, :at)"), {"id": number, "at": at})
            connection.execute(text(
                "INSERT INTO consent (customer_id, channel, granted, source, given_at,"
                " recorded_at) VALUES (1, 'push', :yes, 'app', :at, :at)"),
                {"yes": True, "at": at})
        migrate(database_url, "0024")
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT public_id, anonymous FROM customer ORDER BY id")).all()
            consents = connection.execute(text("SELECT count(*) FROM consent")).scalar()
        public_ids = [public_id for public_id, _anonymous in rows]
        assert len(set(public_ids)) == 3
        assert all(re.fullmatch(r"cus_[0-9a-f]{32}", public_id) for public_id in public_ids)
        assert [bool(anonymous) for _public_id, anonymous in rows] == [False] * 3
        assert consents == 1
        downgrade(database_url, "0023")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM consent")).scalar() == 1
    finally:
        engine.dispose()


def test_0029_gives_existing_orders_a_row_with_what_was_paid(database_url: str) -> None:
    """Orders from before 0029 get their row: the total of the order.created event that
    brought them where it is stored (858.65 paid, not the 1,298 listed), else the sum of
    their lines; placed, nothing refunded, their customer kept."""
    migrate(database_url, "0028")
    engine = make_engine(database_url)
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    lines = [("o-paid", 1, "WM-8KG", 1, "599.00"), ("o-paid", 2, "TD-8KG", 1, "699.00"),
             ("o-old", 1, "HOSE-2M", 2, "25.10"), ("o-anon", 1, "WM-8KG", 1, "599.00")]
    events = [  # the earliest event of an order is the one whose lines were kept
        (1, "evt-1", "o-paid", "858.65"), (2, "evt-1-again", "o-paid", "1.00"),
        (3, "evt-bad", "o-old", "not money"),
    ]
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO customer (id, tenant, attributes, created_at, updated_at,"
                " public_id, anonymous) VALUES (1, 'shop', '{}', :at, :at, 'cus_1', :no)"),
                {"at": at, "no": False})
            for order_id, line, sku, quantity, price in lines:
                connection.execute(text(
                    "INSERT INTO order_line (tenant, order_id, line, customer_id, sku, name,"
                    " category, quantity, unit_price, currency, ordered_at) VALUES ('shop',"
                    " :order, :line, :customer, :sku, 'n', 'c', :quantity, :price, 'EUR', :at)"),
                    {"order": order_id, "line": line, "sku": sku, "quantity": quantity,
                     "price": float(price), "at": at,
                     "customer": None if order_id == "o-anon" else 1})
            for event_id, key, order_id, total in events:
                connection.execute(text(
                    "INSERT INTO commerce_event (id, tenant, event_id, type, customer_id,"
                    " occurred_at, received_at, payload) VALUES (:id, 'shop', :key,"
                    " 'order.created', 1, :at, :at, :payload)"),
                    {"id": event_id, "key": key, "at": at, "payload": json.dumps(
                        {"order_id": order_id, "currency": "EUR", "total": total})})
        migrate(database_url, "0029")
        with session_scope(engine) as session:
            orders = session.exec(select(Order).order_by(col(Order.order_id))).all()
            found = [(row.order_id, row.customer_id, row.total, row.refunded, row.status,
                      row.ordered_at) for row in orders]
            returned = session.exec(select(OrderLine.returned)).all()
        assert found == [
            ("o-anon", None, Decimal("599.00"), Decimal("0.00"), "placed", at),
            ("o-old", 1, Decimal("50.20"), Decimal("0.00"), "placed", at),
            ("o-paid", 1, Decimal("858.65"), Decimal("0.00"), "placed", at),
        ]
        assert returned == [0, 0, 0, 0]
        downgrade(database_url, "0028")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM order_line")).scalar() == 4
    finally:
        engine.dispose()


def test_0030_keeps_stores_as_they_were_and_refuses_half_a_window(database_url: str) -> None:
    """Stores made before 0030 keep their data and get no quiet hours of their own (the
    tenant's apply); a store or tenant row with a start but no end is refused by the
    database itself; down and up again leaves the stores."""
    migrate(database_url, "0028")
    engine = make_engine(database_url)
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO store (id, tenant, key, name, time_zone, created_at, updated_at)"
                " VALUES (1, 'shop', 'centro', 'Centro', 'Europe/Madrid', :at, :at)"),
                {"at": at})
        migrate(database_url, "0030")
        with engine.connect() as connection:
            row = connection.execute(text(
                "SELECT name, time_zone, quiet_start, quiet_end, quiet_off FROM store")).one()
        assert tuple(row) == ("Centro", "Europe/Madrid", None, None, False)
        for statement in (
            "UPDATE store SET quiet_start = '21:00:00'",
            "UPDATE store SET quiet_start = '21:00:00', quiet_end = '09:00:00', quiet_off = :yes",
            "INSERT INTO tenant_preferences (tenant, quiet_end, quiet_off, version, updated_at)"
            " VALUES ('shop', '09:00:00', :no, 1, :at)",
        ):
            with pytest.raises(IntegrityError), engine.begin() as connection:
                connection.execute(text(statement), {"yes": True, "no": False, "at": at})
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO tenant_preferences (tenant, quiet_off, time_zone, version,"
                " updated_at) VALUES ('shop', :yes, 'Europe/Lisbon', 1, :at)"),
                {"yes": True, "at": at})
        downgrade(database_url, "0028")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT name FROM store")).scalar() == "Centro"
            assert "tenant_preferences" not in inspect(connection).get_table_names()
        migrate(database_url, "0030")
    finally:
        engine.dispose()
