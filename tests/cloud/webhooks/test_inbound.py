import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import col, select

from cloud.api import create_app
from cloud.commerce.models import CommerceEvent, OrderLine
from cloud.db import session_scope
from cloud.messages.models import Message
from cloud.messages.queue import enqueue
from cloud.webhooks.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    sign,
    verify_signature,
)
from tests.cloud.delivery.queue_helpers import outgoing
from tests.cloud.factories import bearer, cloud_settings, customer_number, issue_key

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRET, OLD_SECRET = "whsec-new-0123456789", "whsec-old-9876543210"


@pytest.fixture
def client(engine: Engine, migrated_url: str, tenant: str) -> Iterator[TestClient]:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url,
                              webhook_secrets=[SECRET, OLD_SECRET])
    app = create_app(settings, engine=engine, now=lambda: NOW)
    # The admin key is for the customer routes; webhooks go by their signature alone.
    with TestClient(app, headers=bearer(issue_key(engine, tenant=tenant))) as test_client:
        yield test_client


def post(client: TestClient, tenant: str, event: dict[str, Any], *, secret: str = SECRET,
         at: datetime = NOW, signature: str | None = None) -> Any:
    body = json.dumps(event).encode()
    timestamp = int(at.timestamp())
    return client.post(f"/webhooks/{tenant}", content=body, headers={
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature or sign(secret, timestamp, body),
        "content-type": "application/json",
    })


def order(event_id: str = "evt-1", order_id: str = "o-1001") -> dict[str, Any]:
    return {
        "type": "order.created", "event_id": event_id, "occurred_at": "2026-11-23T11:00:00Z",
        "customer": {"external_id": "shop-42"}, "order_id": order_id, "currency": "EUR",
        "total": "649.00",
        "items": [
            {"sku": "WM-8KG", "name": "Washing machine 8 kg", "category": "washers",
             "quantity": 1, "unit_price": "599.00"},
            {"sku": "HOSE-2M", "name": "Inlet hose", "category": "accessories",
             "quantity": 2, "unit_price": "25.00"},
        ],
    }


def test_signature_rules() -> None:
    body = b'{"a": 1}'
    ok = sign(SECRET, int(NOW.timestamp()), body)
    stamp = str(int(NOW.timestamp()))
    verify_signature(secrets=[SECRET], timestamp=stamp, signature=ok, body=body, now=NOW)
    verify_signature(secrets=["other", SECRET], timestamp=stamp, signature=f"v0=x, {ok}",
                     body=body, now=NOW)
    cases = [
        ([], stamp, ok, body, NOW, "not configured"),
        ([SECRET], None, ok, body, NOW, "missing"),
        ([SECRET], "soon", ok, body, NOW, "unix seconds"),
        ([SECRET], stamp, ok, body + b" ", NOW, "does not match"),
        ([SECRET], stamp, ok, body, NOW + timedelta(minutes=6), "off"),
    ]
    for secrets, timestamp, signature, payload, now, message in cases:
        with pytest.raises(SignatureError, match=message):
            verify_signature(secrets=secrets, timestamp=timestamp, signature=signature,
                             body=payload, now=now)


def test_an_order_is_stored_once_with_its_lines(
    client: TestClient, tenant: str, engine: Engine
) -> None:
    customer = client.post(f"/tenants/{tenant}/customers", json={"external_id": "shop-42"}).json()
    first = post(client, tenant, order())
    assert first.status_code == 202, first.text
    assert first.json() == {"event_id": "evt-1", "stored": True, "customer_id": customer["id"],
                            "ignored": None}
    assert post(client, tenant, order(), secret=OLD_SECRET).json()["stored"] is False
    # the same order under a new event id does not double the purchase history
    assert post(client, tenant, order(event_id="evt-2")).json() == {
        "event_id": "evt-2", "stored": True, "customer_id": customer["id"],
        "ignored": "duplicate_order"}
    with session_scope(engine) as session:
        lines = session.exec(select(OrderLine).order_by(col(OrderLine.line))).all()
        events = session.exec(select(CommerceEvent)).all()
    assert [(line.sku, line.category, line.quantity, str(line.unit_price)) for line in lines] == [
        ("WM-8KG", "washers", 1, "599.00"), ("HOSE-2M", "accessories", 2, "25.00"),
    ]
    number = customer_number(engine, tenant=tenant, public_id=customer["id"])
    assert all(line.customer_id == number for line in lines)
    assert len(events) == 2


def test_unsigned_stale_and_malformed_webhooks_are_refused(
    client: TestClient, tenant: str
) -> None:
    assert post(client, tenant, order(), signature="v1=00").status_code == 401
    assert post(client, tenant, order(), at=NOW - timedelta(hours=1)).status_code == 401
    assert client.post(f"/webhooks/{tenant}", json=order()).status_code == 401
    bad = post(client, tenant, {**order(), "currency": "euro"})
    assert bad.status_code == 422
    assert "currency" in bad.json()["detail"]
    unknown = post(client, tenant, {**order(), "type": "order.teleported"})
    assert unknown.status_code == 422
    assert post(client, "nobody", order()).status_code == 404


def test_newsletter_double_opt_in_records_email_consent_on_confirmation(
    client: TestClient, tenant: str
) -> None:
    signup = {"type": "newsletter.signup", "event_id": "n-1", "email": "juan@example.com",
              "occurred_at": "2026-11-20T10:00:00Z", "source": "footer-form"}
    receipt = post(client, tenant, signup).json()
    customer_id = receipt["customer_id"]
    assert customer_id is not None
    consent = f"/tenants/{tenant}/customers/{customer_id}/consent"
    assert client.get(consent).json()["ledger"] == []  # not before the address is confirmed
    confirm = {"type": "newsletter.confirmed", "event_id": "n-2", "email": "juan@example.com",
               "occurred_at": "2026-11-21T08:30:00Z"}
    assert post(client, tenant, confirm).json()["customer_id"] == customer_id
    current = client.get(consent).json()["current"]["email"]
    assert current["granted"] is True
    assert current["source"] == "newsletter-double-opt-in"
    assert current["given_at"].startswith("2026-11-21T08:30")


def test_push_opened_marks_the_message(client: TestClient, tenant: str, engine: Engine) -> None:
    customer = client.post(f"/tenants/{tenant}/customers", json={"external_id": "shop-42"}).json()
    with session_scope(engine) as session:
        number = customer_number(engine, tenant=tenant, public_id=customer["id"])
        message_id = enqueue(session, now=NOW, outgoing=outgoing(tenant, number, "k"))
        session.commit()
    opened = {"type": "push.opened", "event_id": "p-1", "occurred_at": "2026-11-23T11:59:00Z",
              "customer": {"external_id": "shop-42"}, "message_id": message_id}
    assert post(client, tenant, opened).status_code == 202
    cart = {"type": "cart.abandoned", "event_id": "c-1", "occurred_at": "2026-11-23T11:00:00Z",
            "customer": {"email": "nobody@example.com"}, "cart_id": "cart-9", "items": []}
    assert post(client, tenant, cart).json()["customer_id"] is None  # kept, not linked
    with session_scope(engine) as session:
        message = session.get(Message, message_id)
        assert message is not None
        assert message.opened_at == datetime(2026, 11, 23, 11, 59, tzinfo=UTC)


#: What a field of a webhook could hold: any JSON, and the values that reach past the
#: database (NUL characters, integers past its columns, years past its conversions).
PAST_THE_DATABASE: list[object] = [
    "a\x00b", 2**31, 2**63, -(2**63) - 1, 10**30, "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00", "99999999999999.99", "1e400", "x" * 5000,
]
awkward = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.sampled_from(PAST_THE_DATABASE),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8,
)
#: Where in an order (or the other events) a changed value goes.
PLACES: list[tuple[str | int, ...]] = [
    ("type",), ("event_id",), ("occurred_at",), ("customer",), ("customer", "external_id"),
    ("customer", "email"), ("order_id",), ("currency",), ("total",), ("items",),
    ("items", 0, "name"), ("items", 0, "sku"), ("items", 0, "quantity"),
    ("items", 0, "unit_price"), ("coupons",), ("message_id",), ("email",), ("cart_id",),
]


def changed(event: dict[str, Any], place: tuple[str | int, ...], value: object
            ) -> dict[str, Any]:
    document: Any = json.loads(json.dumps(event))
    node = document
    for part in place[:-1]:
        node = node[part]
    node[place[-1]] = value
    result: dict[str, Any] = document
    return result


@settings(max_examples=300, deadline=None)
@given(timestamp=st.none() | st.text(max_size=40) | st.from_regex(r"[0-9]{1,6000}",
                                                                   fullmatch=True),
       signature=st.none() | st.text(max_size=200), body=st.binary(max_size=200))
def test_any_signature_headers_are_refused_cleanly(
    timestamp: str | None, signature: str | None, body: bytes,
) -> None:
    """Anything in the two headers is a SignatureError, never another exception: the
    timestamp is not read as a number before the signature matched (a 4,000-digit one
    used to overflow a float)."""
    with pytest.raises(SignatureError):
        verify_signature(secrets=[SECRET], timestamp=timestamp, signature=signature,
                         body=body, now=NOW)


def test_a_correctly_signed_timestamp_of_any_length_is_refused_for_its_age() -> None:
    body = b"{}"
    for stamp, message in (("9" * 4000, "unix seconds"), ("0" * 12, "off"),
                           (str(int(NOW.timestamp()) + 10**10), "off")):
        with pytest.raises(SignatureError, match=message):
            verify_signature(secrets=[SECRET], timestamp=stamp,
                             signature=_sign_text(stamp, body), body=body, now=NOW)


def _sign_text(stamp: str, body: bytes) -> str:
    digest = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    return f"v1={digest.hexdigest()}"


@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(place=st.sampled_from(PLACES), value=awkward)
def test_a_signed_event_with_any_field_changed_is_stored_or_refused_with_a_422(
    client: TestClient, tenant: str, place: tuple[str | int, ...], value: object,
) -> None:
    """The shop's (signed) events reach PostgreSQL: whatever a field holds, the answer
    is 202 or a 422 naming it, never a server error."""
    event = changed(order(event_id=f"evt-{abs(hash((place, repr(value))))}"), place, value)
    response = post(client, tenant, event)
    assert response.status_code in (202, 422), response.text


@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
def test_values_past_the_database_in_any_field_are_refused_with_a_422(
    client: TestClient, tenant: str,
) -> None:
    """Each of them in each place, deterministically (PostgreSQL refuses them where
    SQLite would store them: they must be refused before)."""
    for index, (place, value) in enumerate(
            (place, value) for place in PLACES for value in PAST_THE_DATABASE):
        response = post(client, tenant, changed(order(event_id=f"evt-x{index}"), place, value))
        assert response.status_code in (202, 422), (place, value, response.text)
