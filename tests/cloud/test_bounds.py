"""Values past what the database holds, sent from outside, are refused with a 4xx that
names what is wrong, before they reach PostgreSQL (which would fail the request with a
500): ids past its integer columns, offsets past any page, NUL characters, years past
its (and Python's) conversions, a signed webhook's absurd timestamp.

Each request below used to be a 500 on PostgreSQL, or is its twin on another route.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, TypeAdapter, ValidationError
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.bounds import INT4_MAX, MAX_OFFSET, BoundedText, DbDate, DbDatetime, RowId
from cloud.channels import adapter_for
from cloud.channels.base import InvalidReceiptError
from cloud.channels.twilio import TwilioSettings
from cloud.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests.cloud.factories import FROM_CONSOLE, bearer, cloud_settings, issue_key

NUL = "a\x00b"
PAST_INT8 = str(2**64)


def probes(tenant: str, customer: str) -> list[tuple[str, str, Any, int, str]]:
    """(method, path, JSON body, status, what the answer names)."""
    t = f"/tenants/{tenant}"
    return [
        # ids past the integer columns, in paths and queries
        ("GET", f"{t}/messages/{INT4_MAX + 1}/attempts", None, 422, "message_id"),
        ("POST", f"{t}/messages/{PAST_INT8}/opened", {}, 422, "message_id"),
        ("DELETE", f"{t}/members/invitations/{PAST_INT8}", None, 422, "invitation_id"),
        ("PATCH", f"{t}/members/{INT4_MAX + 1}", {"role": "analyst"}, 422, "member_id"),
        ("GET", f"{t}/audit?before_id={INT4_MAX + 1}", None, 422, "before_id"),
        ("GET", f"{t}/customers/{INT4_MAX + 1}", None, 404, "not found"),
        ("GET", f"{t}/customers/{PAST_INT8}", None, 404, "not found"),
        ("GET", f"{t}/customers/cus_a%00b", None, 404, "not found"),
        ("GET", f"{t}/customers?offset={MAX_OFFSET + 1}", None, 422, "offset"),
        ("GET", f"{t}/offers?offset={PAST_INT8}", None, 422, "offset"),
        ("GET", f"{t}/presence/live?follow=false", None, 422, "last-event-id"),
        # NUL characters, in queries and bodies
        ("GET", f"{t}/audit?action=a%00b", None, 422, "action"),
        ("GET", f"{t}/analytics/funnel?scenario=a%00b&since=2026-01-01T00:00:00Z"
                "&until=2026-02-01T00:00:00Z", None, 422, "scenario"),
        ("POST", f"{t}/customers", {"first_name": NUL}, 422, "first_name"),
        ("POST", f"{t}/customers", {"email": f"{NUL}@shop.example"}, 422, "email"),
        ("POST", f"{t}/customers", {"attributes": {"tier": NUL}}, 422, "attributes"),
        ("POST", f"{t}/customers", {"attributes": {str(i): i for i in range(101)}}, 422,
         "attributes"),
        ("POST", f"{t}/members/invitations", {"email": f"{NUL}@shop.example", "role": "owner"},
         422, "email"),
        # dates past the years anything is about (Python overflows at the ends)
        ("POST", f"{t}/customers", {"birth_date": "0001-01-01"}, 422, "birth_date"),
        ("POST", f"{t}/customers/{customer}/consent",
         {"channel": "email", "granted": True, "given_at": "9999-12-31T23:59:59-05:00"}, 422,
         "given_at"),
        ("POST", f"{t}/customers/{customer}/locations",
         {"lat": 40.4, "lon": -3.7, "accuracy_m": 10, "at": "0001-01-01T00:00:00+05:00"},
         422, "at"),
        ("GET", f"{t}/analytics/footfall?since=0001-01-01T00:00:00%2B05:00"
                "&until=2026-01-01T00:00:00Z", None, 422, "since"),
        ("POST", "/auth/login", {"email": f"{NUL}@shop.example", "password": "x"}, 422,
         "email"),
    ]


@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
def test_values_past_the_database_are_refused_with_the_field_named(
    engine: Engine, migrated_url: str, tenant: str,
) -> None:
    app = create_app(cloud_settings(tenant=tenant, database_url=migrated_url,
                                    webhook_secrets=["whsec-0123456789abcdef"]),
                     engine=engine)
    with TestClient(app, headers={**bearer(issue_key(engine, tenant=tenant)), **FROM_CONSOLE},
                    raise_server_exceptions=False) as client:
        customer = client.post(f"/tenants/{tenant}/customers", json={"external_id": "j"})
        failures = []
        for method, path, body, status, named in probes(tenant, customer.json()["id"]):
            headers = {"Last-Event-ID": PAST_INT8} if "presence/live" in path else None
            response = client.request(method, path, json=body, headers=headers)
            if response.status_code != status or named not in response.text:
                failures.append((method, path, response.status_code, response.text[:200]))
        # A signed webhook's timestamp of any length: 401, never read as a float.
        response = client.post(f"/webhooks/{tenant}", content=b"{}", headers=[
            (TIMESTAMP_HEADER.encode(), b"9" * 4000),
            (SIGNATURE_HEADER.encode(), b"v1=\xe9" + b"0" * 64)])
        if response.status_code != 401 or "unix seconds" not in response.text:
            failures.append(("POST", "/webhooks", response.status_code, response.text[:200]))
        # A signature header of any bytes (it was compared as text: a TypeError, a 500).
        response = client.post(f"/webhooks/{tenant}", content=b"{}", headers=[
            (TIMESTAMP_HEADER.encode(), b"1700000000"),
            (SIGNATURE_HEADER.encode(), b"v1=\xe9" + b"0" * 64)])
        if response.status_code != 401 or "does not match" not in response.text:
            failures.append(("POST", "/webhooks", response.status_code, response.text[:200]))
    assert not failures, failures


@pytest.mark.parametrize(("bound", "inside", "outside"), [
    (RowId, [1, INT4_MAX], [0, INT4_MAX + 1, 2**64]),
    (BoundedText, ["", "ñ" * 10, "\x01"], [NUL, "\x00"]),
    (DbDate, ["1900-01-01", "2999-12-31"], ["1899-12-31", "0001-01-01", "3000-01-01"]),
    (DbDatetime, ["2026-01-01T00:00:00+14:00"],
     ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00", "2026-01-01T00:00:00"]),
])
def test_each_bound(bound: Any, inside: list[object], outside: list[object]) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(bound)
    for value in inside:
        adapter.validate_python(value)
    for value in outside:
        with pytest.raises(ValidationError):
            adapter.validate_python(value)


@settings(max_examples=100, deadline=None)
@given(signature=st.text(max_size=40), form=st.dictionaries(
    st.sampled_from(["AccountSid", "MessageSid", "MessageStatus", "ErrorCode", "x"]),
    st.text(max_size=40), max_size=5))
def test_any_sms_receipt_is_parsed_or_refused_cleanly(
    signature: str, form: dict[str, str],
) -> None:
    """A provider's receipt as anyone could post it: refused (403) unless signed; a
    signature header with a character past ASCII was a TypeError, a 500."""
    settings_ = TwilioSettings(account_sid="AC" + "0" * 32, auth_token=SecretStr("t0ken"),
                               from_number="+34600000000")
    with pytest.raises(InvalidReceiptError):
        adapter_for("sms").parse_receipt(  # type: ignore[attr-defined]
            settings_, url="https://vitrina.example/receipts/sms", form=form,
            signature=signature)
