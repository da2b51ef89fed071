"""Customers' own identity: an app key acts for a customer only with the customer token
the shop's backend signed for them; alone it makes and uses an anonymous installation.

Each refusal below is one way a public app key, or a token, could be used to reach a
customer who is not the app's own (docs/security.md lists them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.auth.models import Role, TokenAlgorithm
from cloud.customers.crud import find_by_public_id
from cloud.db import session_scope
from cloud.messages.models import Message, MessageStatus
from tests.cloud.factories import bearer, cloud_settings, issue_key, register_shop_backend
from tests.support.shop_backend import ShopBackend

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OTHER_TENANT = "other-shop"
FCM_TOKEN = "fcm-token-of-juans-phone-0001"


@dataclass
class Shop:
    """The API, as the tenant's back office (admin key) and its app (app key), with the
    tenant's backend able to sign customer tokens."""

    client: TestClient
    engine: Engine
    tenant: str
    admin: dict[str, str]
    app: dict[str, str]
    backend: ShopBackend

    @property
    def base(self) -> str:
        return f"/tenants/{self.tenant}"

    def as_app(self, subject: str | None = None, *, token: str | None = None
               ) -> dict[str, str]:
        """The app's headers: its key, and a token for `subject` (or `token` as given)."""
        if subject is not None:
            token = self.backend.token(subject, now=NOW)
        return {**self.app, **({"X-Customer-Token": token} if token is not None else {})}

    def sign_in(self, subject: str, **body: object) -> httpx.Response:
        response: httpx.Response = self.client.post(f"{self.base}/customers", json=body,
                                headers=self.as_app(subject))
        return response

    def customer(self, subject: str) -> str:
        """The public id of the customer the shop knows as `subject`, signed in by the app."""
        response = self.sign_in(subject, first_name=subject.title())
        assert response.status_code in (200, 201), response.text
        public_id: str = response.json()["id"]
        return public_id


@pytest.fixture
def shop(engine: Engine, migrated_url: str, tenant: str) -> Iterator[Shop]:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url)
    with TestClient(create_app(settings, engine=engine, now=lambda: NOW)) as client:
        yield Shop(
            client=client, engine=engine, tenant=tenant,
            admin=bearer(issue_key(engine, tenant=tenant)),
            app=bearer(issue_key(engine, tenant=tenant, role=Role.APP)),
            backend=register_shop_backend(engine, tenant=tenant),
        )


def forged(header: dict[str, object], claims: dict[str, object], signature: bytes = b"x"
           ) -> str:
    """A JWT put together by hand, as an attacker would."""
    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()
    return ".".join([part(json.dumps(header).encode()), part(json.dumps(claims).encode()),
                     part(signature)])


def hmac_signed(header: dict[str, object], claims: dict[str, object], secret: str) -> str:
    """The classic confusion: an HMAC keyed with the (public) verification key."""
    unsigned = forged(header, claims).rsplit(".", 1)[0]
    mac = hmac.new(secret.encode(), unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def claims(tenant: str, subject: str = "juan", **changes: object) -> dict[str, object]:
    issued = int(NOW.timestamp())
    return {"sub": subject, "aud": tenant, "iat": issued, "exp": issued + 600, **changes}


# --- what an app key alone may do -------------------------------------------------------------


def test_an_app_key_alone_makes_only_an_anonymous_installation(shop: Shop) -> None:
    made = shop.client.post(f"{shop.base}/customers", json={"locale": "es-ES"}, headers=shop.app)
    assert made.status_code == 201, made.text
    assert made.json()["anonymous"] is True
    assert made.json()["external_id"] is None
    for body in ({"email": "juan@example.com"}, {"external_id": "juan"},
                 {"first_name": "Juan"}, {"installation_id": made.json()["id"]}):
        refused = shop.client.post(f"{shop.base}/customers", json=body, headers=shop.app)
        assert refused.status_code == 401, (body, refused.text)
        assert "X-Customer-Token" in refused.json()["detail"]
    # The installation's own id reaches it: consent, devices, its (empty) profile.
    installation = f"{shop.base}/customers/{made.json()['id']}"
    consent = shop.client.post(f"{installation}/consent", headers=shop.app,
                               json={"channel": "push", "granted": True, "source": "app"})
    assert consent.status_code == 201, consent.text
    assert consent.json()["customer_id"] == made.json()["id"]
    device = shop.client.post(f"{installation}/devices", headers=shop.app,
                              json={"kind": "fcm", "token": FCM_TOKEN})
    assert device.status_code == 201, device.text
    assert shop.client.get(installation, headers=shop.app).json()["locale"] == "es-ES"


def test_an_app_key_without_a_token_reaches_no_signed_in_customer(shop: Shop) -> None:
    juan = f"{shop.base}/customers/{shop.customer('juan')}"
    for method, path, body in [
        ("GET", juan, None), ("GET", f"{juan}/consent", None), ("GET", f"{juan}/devices", None),
        ("GET", f"{juan}/coupons", None),
        ("POST", f"{juan}/consent", {"channel": "push", "granted": False, "source": "app"}),
        ("POST", f"{juan}/devices", {"kind": "fcm", "token": "fcm-token-of-the-attacker-01"}),
        ("POST", f"{juan}/locations", {"lat": 40.4, "lon": -3.7, "accuracy_m": 10}),
    ]:
        response = shop.client.request(method, path, json=body, headers=shop.app)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["detail"] == (
            "an app key acts for a signed-in customer only with their token: send the "
            "signed-in customer's token in X-Customer-Token")
    assert shop.client.get(f"{juan}/devices", headers=shop.admin).json() == []


def test_the_customers_own_token_opens_their_routes_and_nobody_elses(shop: Shop) -> None:
    juan, ana = shop.customer("juan"), shop.customer("ana")
    as_juan = shop.as_app("juan")
    assert shop.client.get(f"{shop.base}/customers/{juan}", headers=as_juan).json()[
        "external_id"] == "juan"
    answer = shop.client.post(f"{shop.base}/customers/{juan}/consent", headers=as_juan,
                              json={"channel": "push", "granted": True, "source": "app"})
    assert answer.status_code == 201, answer.text
    for path in ("", "/consent", "/devices", "/coupons"):
        refused = shop.client.get(f"{shop.base}/customers/{ana}{path}", headers=as_juan)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["detail"] == "the customer token is for another customer"
    stolen = shop.client.post(f"{shop.base}/customers/{ana}/devices", headers=as_juan,
                              json={"kind": "fcm", "token": "fcm-token-of-the-attacker-01"})
    assert stolen.status_code == 403
    # Nor does an app see, or use, the database's numbers.
    with session_scope(shop.engine) as session:
        row = find_by_public_id(session, tenant=shop.tenant, public_id=juan)
        assert row is not None
        number = row.id
    by_number = shop.client.get(f"{shop.base}/customers/{number}/consent", headers=as_juan)
    assert by_number.status_code == 404
    assert "public id" in by_number.json()["detail"]
    assert shop.client.get(f"{shop.base}/customers/{number}", headers=shop.admin).json()[
        "id"] == juan  # the back office may


# --- each way a token can be wrong ------------------------------------------------------------


def _refusals(shop: Shop, other: ShopBackend) -> dict[str, str]:
    backend, tenant = shop.backend, shop.tenant
    private = backend.keys[0]
    good = backend.token("juan", now=NOW)
    head, body, signature = good.split(".")
    flipped = signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")
    return {
        "expired": backend.token("juan", now=NOW - timedelta(hours=1, minutes=2),
                                 lifetime=timedelta(hours=1)),
        "issued in the future": backend.token("juan", now=NOW + timedelta(minutes=5),
                                              lifetime=timedelta(minutes=10)),
        "lives too long": backend.token("juan", now=NOW, lifetime=timedelta(hours=2)),
        "tampered signature": f"{head}.{body}.{flipped}",
        "tampered subject": ".".join([head, forged({}, claims(tenant, "ana")).split(".")[1],
                                      signature]),
        "alg none": forged({"alg": "none", "kid": backend.kid}, claims(tenant), b""),
        "HS256 keyed with the public key": hmac_signed(
            {"alg": "HS256", "kid": backend.kid}, claims(tenant), backend.public_key_pem),
        "RS256": forged({"alg": "RS256", "kid": backend.kid}, claims(tenant)),
        "EdDSA under an ES256 kid": jwt.encode(
            claims(tenant), ShopBackend.new(tenant, algorithm=TokenAlgorithm.EDDSA).keys[0],
            algorithm="EdDSA", headers={"kid": backend.kid}),
        "no kid": jwt.encode(claims(tenant), private, algorithm="ES256"),
        "unknown kid": jwt.encode(claims(tenant), private, algorithm="ES256",
                                  headers={"kid": "never-registered"}),
        "another tenant's audience": jwt.encode(
            claims(OTHER_TENANT), private, algorithm="ES256", headers={"kid": backend.kid}),
        "another tenant's key": other.token("juan", now=NOW),
        "no expiry": jwt.encode({k: v for k, v in claims(tenant).items() if k != "exp"},
                                private, algorithm="ES256", headers={"kid": backend.kid}),
        "not a JWT": "not-a-token",
        "empty": "",
    }


def test_each_wrong_token_is_a_401_saying_what_is_wrong_and_nothing_more(shop: Shop) -> None:
    juan = shop.customer("juan")
    other = register_shop_backend(shop.engine, tenant=OTHER_TENANT, kid="other-key")
    expected = {
        "expired": "has expired", "issued in the future": "issued in the future",
        "lives too long": "lives too long", "tampered signature": "signature does not verify",
        "tampered subject": "signature does not verify",
        "alg none": "ES256 or EdDSA", "HS256 keyed with the public key": "ES256 or EdDSA",
        "RS256": "ES256 or EdDSA", "EdDSA under an ES256 kid": "signs with ES256",
        "no kid": "names no key", "unknown kid": "not registered for this tenant",
        "another tenant's audience": "for another tenant",
        "another tenant's key": "not registered for this tenant",
        "no expiry": "'exp'", "not a JWT": "not a JWT", "empty": "not a JWT",
    }
    refusals = _refusals(shop, other)
    assert set(refusals) == set(expected)
    for case, token in refusals.items():
        response = shop.client.get(f"{shop.base}/customers/{juan}/consent",
                                   headers=shop.as_app(token=token))
        assert response.status_code == 401, (case, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        detail = response.json()["detail"]
        assert expected[case] in detail, (case, detail)
        assert shop.backend.public_key_pem.splitlines()[1] not in detail
    # The same token, untouched, works: the refusals above are about what was changed.
    fine = shop.client.get(f"{shop.base}/customers/{juan}/consent", headers=shop.as_app("juan"))
    assert fine.status_code == 200


def test_a_token_within_the_clock_leeway_is_accepted(shop: Shop) -> None:
    juan = shop.customer("juan")
    slightly_ahead = shop.backend.token("juan", now=NOW + timedelta(seconds=30))
    assert shop.client.get(f"{shop.base}/customers/{juan}/consent",
                           headers=shop.as_app(token=slightly_ahead)).status_code == 200
    just_expired = shop.backend.token("juan", now=NOW - timedelta(minutes=10, seconds=30),
                                      lifetime=timedelta(minutes=10))
    assert shop.client.get(f"{shop.base}/customers/{juan}/consent",
                           headers=shop.as_app(token=just_expired)).status_code == 200


# --- keys: registered, rotated, retired -------------------------------------------------------


def test_keys_rotate_two_valid_during_the_overlap_then_the_old_one_retired(shop: Shop) -> None:
    keys = f"{shop.base}/customer-token-keys"
    juan = shop.customer("juan")
    consent = f"{shop.base}/customers/{juan}/consent"
    old_token = shop.backend.token("juan", now=NOW)
    new = ShopBackend.new(shop.tenant, kid="shop-key-2", algorithm=TokenAlgorithm.EDDSA)
    added = shop.client.post(keys, json=new.registration(), headers=shop.admin)
    assert added.status_code == 201, added.text
    assert added.json()["algorithm"] == "EdDSA"
    for token in (old_token, new.token("juan", now=NOW)):
        assert shop.client.get(consent, headers=shop.as_app(token=token)).status_code == 200
    retired = shop.client.delete(f"{keys}/shop-key-1", headers=shop.admin)
    assert retired.status_code == 200
    assert retired.json()["retired_at"].startswith("2026-11-23T12:00")
    refused = shop.client.get(consent, headers=shop.as_app(token=old_token))
    assert refused.status_code == 401
    assert "retired" in refused.json()["detail"]
    assert shop.client.get(consent, headers=shop.as_app(token=new.token("juan", now=NOW))
                           ).status_code == 200
    listed = shop.client.get(keys, headers=shop.admin).json()
    assert [(key["kid"], key["retired_at"] is not None) for key in listed] == [
        ("shop-key-1", True), ("shop-key-2", False)]
    audit = shop.client.get(f"{shop.base}/audit", params={"action": "token_key."},
                            headers=shop.admin).json()
    assert [entry["action"] for entry in audit] == ["token_key.retire", "token_key.create"]
    # A kid is never reused, retired or not; an app key manages no keys.
    again = shop.client.post(keys, json={**new.registration(), "kid": "shop-key-1"},
                             headers=shop.admin)
    assert again.status_code == 409
    assert shop.client.post(keys, json=new.registration(), headers=shop.app).status_code == 403
    assert shop.client.delete(f"{keys}/nothing", headers=shop.admin).status_code == 404


@pytest.mark.parametrize(("change", "says"), [
    ({"public_key_pem": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"},
     "not a PEM public key"),
    ({"algorithm": "EdDSA"}, "cannot verify EdDSA"),
    ({"algorithm": "HS256"}, "algorithm"),
    ({"kid": "has spaces"}, "kid"),
    ({"public_key_pem": "private"}, "private key"),
])
def test_unusable_keys_are_refused_at_their_field(
    shop: Shop, change: dict[str, str], says: str
) -> None:
    body = {**ShopBackend.new(shop.tenant, kid="k-new").registration(), **change}
    if body["public_key_pem"] == "private":
        body["public_key_pem"] = shop.backend.keys[0]
    response = shop.client.post(f"{shop.base}/customer-token-keys", json=body,
                                headers=shop.admin)
    assert response.status_code == 422, response.text
    assert says in response.text
    if "private" in says:
        assert shop.backend.keys[0].splitlines()[1] not in response.text


# --- signing in, claiming the installation, moving devices ------------------------------------


def test_signing_in_claims_the_anonymous_installation_and_its_devices(shop: Shop) -> None:
    made = shop.client.post(f"{shop.base}/customers", json={}, headers=shop.app).json()
    installation = f"{shop.base}/customers/{made['id']}"
    for device in ({"kind": "fcm", "token": FCM_TOKEN},
                   {"kind": "app_beacon", "install_id": "install-0001"}):
        assert shop.client.post(f"{installation}/devices", json=device,
                                headers=shop.app).status_code == 201
    shop.client.post(f"{installation}/consent", headers=shop.app,
                     json={"channel": "push", "granted": True, "source": "app"})
    signed_in = shop.sign_in("juan", first_name="Juan", installation_id=made["id"])
    assert signed_in.status_code == 201, signed_in.text
    juan = signed_in.json()
    assert (juan["external_id"], juan["anonymous"]) == ("juan", False)
    assert juan["id"] != made["id"]
    devices = shop.client.get(f"{shop.base}/customers/{juan['id']}/devices",
                              headers=shop.as_app("juan")).json()
    assert sorted(device["kind"] for device in devices) == ["app_beacon", "fcm"]
    assert {device["customer_id"] for device in devices} == {juan["id"]}
    consent = shop.client.get(f"{shop.base}/customers/{juan['id']}/consent",
                              headers=shop.as_app("juan")).json()
    assert consent["current"]["push"]["granted"] is True
    # The installation is gone: its id reaches nothing, and cannot be claimed twice.
    assert shop.client.get(f"{installation}/devices", headers=shop.app).status_code == 404
    twice = shop.sign_in("juan", installation_id=made["id"])
    assert twice.status_code == 422
    assert twice.json()["detail"][0]["loc"] == ["body", "installation_id"]
    # Signing in again finds the customer (200), and takes no other subject's id.
    again = shop.sign_in("juan")
    assert (again.status_code, again.json()["id"]) == (200, juan["id"])
    other = shop.sign_in("juan", external_id="ana")
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["body", "external_id"]


def test_moving_a_device_needs_the_new_owners_token(shop: Shop) -> None:
    juan, ana = shop.customer("juan"), shop.customer("ana")
    device = {"kind": "fcm", "token": FCM_TOKEN}
    beacon = {"kind": "app_beacon", "install_id": "install-juan"}
    for body in (device, beacon):
        assert shop.client.post(f"{shop.base}/customers/{juan}/devices", json=body,
                                headers=shop.as_app("juan")).status_code == 201
    # An anonymous installation (an app key alone) cannot take Juan's token or beacon id.
    attacker = shop.client.post(f"{shop.base}/customers", json={}, headers=shop.app).json()
    for body in (device, beacon):
        taken = shop.client.post(f"{shop.base}/customers/{attacker['id']}/devices", json=body,
                                 headers=shop.app)
        assert taken.status_code == 403, taken.text
        assert "needs this customer's token" in taken.json()["detail"]
    assert len(shop.client.get(f"{shop.base}/customers/{juan}/devices",
                               headers=shop.admin).json()) == 2
    # Ana, signed in on that phone, may: the token proves she is the new owner.
    moved = shop.client.post(f"{shop.base}/customers/{ana}/devices", json=device,
                             headers=shop.as_app("ana"))
    assert moved.status_code == 201, moved.text
    assert moved.json()["customer_id"] == ana
    kinds = [d["kind"] for d in shop.client.get(f"{shop.base}/customers/{juan}/devices",
                                                headers=shop.admin).json()]
    assert kinds == ["app_beacon"]


def test_no_app_learns_whether_an_external_id_is_taken(shop: Shop) -> None:
    taken = shop.client.post(f"{shop.base}/customers", json={"external_id": "shop-42"},
                             headers=shop.admin)
    assert taken.status_code == 201
    answers = [shop.client.post(f"{shop.base}/customers", json={"external_id": external_id},
                                headers=shop.app) for external_id in ("shop-42", "shop-43")]
    assert [answer.status_code for answer in answers] == [401, 401]
    assert answers[0].json()["detail"] == answers[1].json()["detail"]
    # With the customer's own token it is their sign-in, not a conflict.
    mine = shop.sign_in("shop-42", first_name="Juan")
    assert (mine.status_code, mine.json()["id"]) == (200, taken.json()["id"])
    assert shop.client.post(f"{shop.base}/customers", json={"external_id": "shop-42"},
                            headers=shop.admin).status_code == 409  # the back office knows


def test_customer_ids_are_random_not_a_sequence(shop: Shop) -> None:
    made = [shop.client.post(f"{shop.base}/customers", json={}, headers=shop.app).json()["id"]
            for _ in range(20)]
    assert all(re.fullmatch(r"cus_[0-9a-f]{32}", public_id) for public_id in made)
    assert len(set(made)) == 20
    numbers = [int(public_id[4:], 16) for public_id in made]
    steps = {later - earlier for earlier, later in itertools.pairwise(numbers)}
    assert len(steps) == 19  # no common stride, as a sequence would have
    neighbour = made[0][:-1] + ("1" if made[0][-1] == "0" else "0")  # one digit off
    assert shop.client.get(f"{shop.base}/customers/{neighbour}/devices",
                           headers=shop.app).status_code == 404


def test_an_app_reports_opens_only_of_its_customers_messages(shop: Shop) -> None:
    juan, ana = shop.customer("juan"), shop.customer("ana")
    message_ids = {}
    with session_scope(shop.engine) as session:
        for name, public_id in (("juan", juan), ("ana", ana)):
            row = find_by_public_id(session, tenant=shop.tenant, public_id=public_id)
            assert row is not None
            assert row.id is not None
            message = Message(
                tenant=shop.tenant, customer_id=row.id, channel="push", rule="r",
                idempotency_key=f"m-{name}", status=MessageStatus.SENT, title="t", body="b",
                content={}, created_at=NOW,
            )
            session.add(message)
            session.flush()
            message_ids[name] = message.id
        session.commit()
    opened = f"{shop.base}/messages/{message_ids['juan']}/opened"
    no_token = shop.client.post(opened, headers=shop.app)
    assert no_token.status_code == 401
    assert shop.client.post(opened, headers=shop.as_app("ana")).status_code == 404
    assert shop.client.post(opened, headers=shop.as_app("juan")).status_code == 200
