"""Tracking endpoints through the API, on SQLite and PostgreSQL: clicks, opens (pixel,
service worker, app), unsubscribe, attempts, the VAPID key and the funnel."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, update
from sqlmodel import col, select

from cloud.api import create_app
from cloud.auth.models import Role
from cloud.channels.vapid import b64url_decode
from cloud.customers.crud import current_consent
from cloud.db import session_scope
from cloud.messages.models import Message, MessageStatus
from cloud.scenarios.models import Journey, JourneyStatus
from cloud.triggers import Trigger, TriggerKind
from tests.cloud.delivery.queue_helpers import (
    NOW,
    message,
    new_customer,
    outgoing,
    queue,
    queue_settings,
    token_for,
)
from tests.cloud.factories import Clock, bearer, issue_key, register_shop_backend


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def client(engine: Engine, migrated_url: str, tenant: str, clock: Clock) -> Iterator[TestClient]:
    """No key by default: the public routes need none; others pass theirs."""
    app = create_app(queue_settings(tenant=tenant, database_url=migrated_url), engine=engine,
                     now=clock)
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


def mark_sent(engine: Engine, message_id: int, at: datetime, **values: Any) -> None:
    with session_scope(engine) as session:
        session.execute(
            update(Message).where(col(Message.id) == message_id)
            .values(status=MessageStatus.SENT.value, sent_at=at, **values)
        )
        session.commit()


def triggers(engine: Engine, customer_id: int) -> list[Trigger]:
    with session_scope(engine) as session:
        return list(session.exec(
            select(Trigger).where(Trigger.customer_id == customer_id).order_by(col(Trigger.id))
        ).all())


def test_clicks_opens_and_unsubscribes_are_recorded_once_and_become_triggers(
    client: TestClient, engine: Engine, tenant: str, clock: Clock
) -> None:
    customer = new_customer(engine, tenant, consent=("email",),
                            email="juan@example.net")
    [email_id] = queue(engine, outgoing(tenant, customer, "e:1", channel="email",
                                        offer_id=7, product_sku="DRY-8",
                                        product_category="dryers"))
    assert email_id is not None
    mark_sent(engine, email_id, NOW)
    token = token_for("e:1")

    clock.now = NOW + timedelta(minutes=1)
    pixel = client.get(f"/o/{token}.gif")
    assert pixel.status_code == 200
    assert pixel.headers["content-type"] == "image/gif"
    assert pixel.headers["cache-control"].startswith("no-store")
    clock.now = NOW + timedelta(minutes=2)
    click = client.get(f"/c/{token}")
    assert click.status_code == 302
    assert click.headers["location"] == "https://shop.example/dryers"
    clock.now = NOW + timedelta(minutes=3)
    assert client.get(f"/o/{token}.gif").status_code == 200  # reopened: counted once
    link = client.get(f"/c/{token}/0")
    assert (link.status_code, link.headers["location"]) == (
        302, "https://shop.example/dryers?a=1&b=2"
    )
    assert client.get(f"/c/{token}/1").status_code == 404
    assert client.get("/c/AAAAAAAAAAAAAAAA").status_code == 404
    assert client.get("/c/not-a-token").status_code == 404
    assert client.get("/o/AAAAAAAAAAAAAAAA.gif").status_code == 404

    row = message(engine, email_id)
    assert row.opened_at == NOW + timedelta(minutes=1)
    assert row.clicked_at == NOW + timedelta(minutes=2)
    recorded = [t for t in triggers(engine, customer) if t.kind.startswith("message.")]
    assert [(t.kind, t.occurred_at) for t in recorded] == [
        (TriggerKind.MESSAGE_OPENED, NOW + timedelta(minutes=1)),
        (TriggerKind.MESSAGE_CLICKED, NOW + timedelta(minutes=2)),
    ]
    assert recorded[0].attributes == {
        "message_id": email_id, "scenario": "cross-sell", "step": "push", "offer_id": 7,
        "product_sku": "DRY-8", "product_category": "dryers", "channel": "email",
    }

    # Unsubscribe: a page first (link scanners GET every link), the POST withdraws.
    page = client.get(f"/u/{token}")
    assert page.status_code == 200
    assert '<form method="post">' in page.text
    with session_scope(engine) as session:
        assert current_consent(session, customer_id=customer)["email"].granted
    one_click = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    with session_scope(engine) as session:
        entry = current_consent(session, customer_id=customer)["email"]
    assert (entry.granted, entry.source) == (False, "unsubscribe-link")
    assert client.post("/u/AAAAAAAAAAAAAAAA").status_code == 404


def test_app_opens_attempts_vapid_key_and_the_funnel(
    client: TestClient, engine: Engine, tenant: str, clock: Clock
) -> None:
    app_key = bearer(issue_key(engine, tenant=tenant, role=Role.APP))
    admin = bearer(issue_key(engine, tenant=tenant))
    customer = new_customer(engine, tenant, external_id="juan")
    # The app reports opens for its signed-in customer, with the token the shop signed.
    as_juan = app_key | register_shop_backend(engine, tenant=tenant).headers("juan", now=NOW)
    ids = queue(engine, *(
        outgoing(tenant, customer, f"f:{n}", step=step, variant=variant)
        for n, (step, variant) in enumerate(
            [("push", "a"), ("push", "a"), ("push", "b"), ("reminder", None)]
        )
    ), outgoing(tenant, customer, "other", scenario="welcome"))
    opened, clicked, failed, _pending, other = (i or 0 for i in ids)
    for message_id in (opened, clicked, other):
        mark_sent(engine, message_id, NOW)
    held = new_customer(engine, tenant)
    with session_scope(engine) as session:
        session.execute(update(Message).where(col(Message.id) == failed)
                        .values(status=MessageStatus.FAILED.value, error_code="no_address"))
        session.add(Journey(  # a customer in the holdout group: nothing is ever queued
            tenant=tenant, scenario_key="cross-sell", scenario_version=1,
            customer_id=held, entry_key="held", entry_kind="order.created",
            holdout=True, status=JourneyStatus.HELD_OUT, started_at=NOW, updated_at=NOW,
        ))
        session.commit()

    clock.now = NOW + timedelta(minutes=10)
    url = f"/tenants/{tenant}/messages/{opened}/opened"
    assert client.post(url).status_code == 401
    assert client.post(url, headers=app_key).status_code == 401  # no token: nobody's
    reported = client.post(url, json={"opened_at": (NOW + timedelta(minutes=9)).isoformat()},
                           headers=as_juan)
    assert reported.status_code == 200, reported.text
    assert reported.json()["opened_at"].startswith("2026-11-24T10:09:00")
    again = client.post(url, headers=as_juan)  # a second report changes nothing
    assert again.json()["opened_at"].startswith("2026-11-24T10:09:00")
    assert client.post(url, json={"shoe": 1}, headers=as_juan).status_code == 422
    assert client.post(f"/tenants/{tenant}/messages/999999/opened",
                       headers=as_juan).status_code == 404
    assert client.get(f"/c/{token_for('f:1')}").status_code == 302

    attempts = client.get(f"/tenants/{tenant}/messages/{opened}/attempts", headers=admin)
    assert (attempts.status_code, attempts.json()) == (200, [])
    assert client.get(f"/tenants/{tenant}/messages/{opened}/attempts",
                      headers=app_key).status_code == 403

    key = client.get(f"/tenants/{tenant}/web-push/public-key", headers=app_key)
    assert key.status_code == 200
    point = b64url_decode(key.json()["application_server_key"])
    assert (len(point), point[0]) == (65, 4)
    assert client.get(f"/tenants/{tenant}/web-push/public-key",
                      headers=app_key).json() == key.json()  # kept, not remade

    period = {"since": NOW.isoformat(), "until": (NOW + timedelta(days=1)).isoformat()}
    rows = client.get(f"/tenants/{tenant}/analytics/funnel", params=period, headers=admin)
    assert rows.status_code == 200, rows.text
    by_key = {(r["scenario"], r["step"], r["variant"]): r for r in rows.json()}
    assert set(by_key) == {
        ("cross-sell", "push", "a"), ("cross-sell", "push", "b"),
        ("cross-sell", "reminder", None), ("welcome", "push", None), ("cross-sell", None, None),
    }
    assert by_key[("cross-sell", None, None)]["held_out"] == 1
    assert by_key[("cross-sell", None, None)]["queued"] == 0
    variant_a = by_key[("cross-sell", "push", "a")]
    assert {k: variant_a[k] for k in ("queued", "sent", "opened", "clicked", "failed")} == {
        "queued": 2, "sent": 2, "opened": 1, "clicked": 1, "failed": 0,
    }
    assert by_key[("cross-sell", "push", "b")]["failed"] == 1
    assert by_key[("cross-sell", "reminder", None)]["pending"] == 1
    only = client.get(f"/tenants/{tenant}/analytics/funnel",
                      params={**period, "scenario": "welcome"}, headers=admin).json()
    assert [(r["scenario"], r["sent"]) for r in only] == [("welcome", 1)]
    backwards = {"since": period["until"], "until": period["since"]}
    assert client.get(f"/tenants/{tenant}/analytics/funnel", params=backwards,
                      headers=admin).status_code == 422


#: What a service worker (or anyone holding the link) could post as an open report.
reports = st.one_of(
    st.binary(max_size=2100),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20)
                 | st.sampled_from(["9999-12-31T23:59:59-05:00", "2026-11-23T12:00:00Z"]),
                 lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.sampled_from(["tag", "opened_at", "x"]), inner,
                                   max_size=3),
                 max_leaves=6).map(lambda value: json.dumps(value).encode()),
    st.sampled_from([1, 100, 1024, 1100]).map(lambda depth: b"[" * depth + b"]" * depth),
)


@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
def test_any_open_report_is_recorded_or_refused_cleanly(
    client: TestClient, engine: Engine, tenant: str,
) -> None:
    """POST /o/{token} reads its body as JSON whatever it is sent as: anything in it is
    a 204, or a 413/422 saying what is wrong (an array nested a thousand deep was a
    RecursionError, a 500)."""
    customer = new_customer(engine, tenant, consent=("web_push",))
    [message_id] = queue(engine, outgoing(tenant, customer, "w:1", channel="web_push"))
    assert message_id is not None
    mark_sent(engine, message_id, NOW)
    token = token_for("w:1")
    assert client.post(f"/o/{token}", content=b"{}").status_code == 204  # a real link

    @settings(max_examples=60, deadline=None)
    @given(reports)
    def report(body: bytes) -> None:
        response = client.post(f"/o/{token}", content=body,
                               headers={"Content-Type": "text/plain"})
        assert response.status_code in (204, 404, 413, 422), (body[:80], response.text)

    report()
    # Outside hypothesis, which raises the recursion limit while it runs: a thousand
    # nested arrays (2 KB) was a RecursionError in json.loads, a 500.
    deep = client.post(f"/o/{token}", content=b"[" * 1000 + b"]" * 1000)
    assert deep.status_code == 422, deep.text
