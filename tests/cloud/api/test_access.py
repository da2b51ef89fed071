"""Who may call what: every protected route of the API, called by every kind of caller.

The table below is the access policy. A route added to the API without an entry here
fails `test_every_route_is_in_the_policy`, so none can be left open by accident.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, inspect, text

from cloud.api import create_app
from cloud.api.access import CSRF_HEADER, SESSION_COOKIE
from cloud.auth.keys import create_key, generate_key, revoke_key
from cloud.auth.members import create_member, grant
from cloud.auth.models import Role
from cloud.auth.permissions import MemberRole
from cloud.auth.sessions import SessionPolicy, open_session
from cloud.customers.crud import create_customer
from cloud.customers.models import CustomerCreate
from cloud.db import session_scope
from cloud.metrics import REGISTRY
from tests.cloud.factories import (
    KEY_ID,
    KEY_SECRET,
    OPERATOR_KEY,
    cloud_settings,
    register_shop_backend,
)
from tests.support.shop_backend import ShopBackend

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OTHER_TENANT = "other-shop"
PASSWORD = "correct horse battery staple"

#: Who may call each kind of route, spelled out here rather than read from the code's
#: grants: API keys by role, console members by their role in the tenant. "app" is the
#: app key with the path customer's token (`test_an_app_key_alone_reaches_only_...` has
#: what an app key alone may do).
CREATE_CUSTOMERS = frozenset({"admin", "app", "owner"})
READ_CUSTOMERS = frozenset({"admin", "owner", "marketer"})
#: One customer's profile: the back office's readers, and the app signed in as them.
PROFILE = READ_CUSTOMERS | {"app"}
ERASE = frozenset({"admin", "owner"})
#: The app acting for its shopper (and the back office).
APP_OR_ADMIN = frozenset({"admin", "app", "owner"})
COUPONS = frozenset({"admin", "app", "owner", "marketer"})
READ_CONFIG = frozenset({"admin", "owner", "marketer", "store_operator", "analyst"})
ANALYTICS = READ_CONFIG
STORES = frozenset({"admin", "owner", "store_operator"})
#: Where consenting app users were lately: those who place geofences, not every reader
#: (a marketer could put names to the positions; an analyst needs aggregates only).
LOCATIONS = frozenset({"admin", "owner", "store_operator"})
MARKETING = frozenset({"admin", "owner", "marketer"})
KEYS = frozenset({"admin", "owner", "operator"})
MEMBERS = KEYS
AUDIT = frozenset({"admin", "owner", "analyst"})
OPERATOR = frozenset({"operator"})
#: Routes under /tenants/{tenant} that change configuration: each writes an audit entry.
MEMBER_ROLES = ("owner", "marketer", "store_operator", "analyst")
CUSTOMER = "/tenants/{tenant}/customers/{customer_id}"
TEMPLATE = "/tenants/{tenant}/templates/{key}/{channel}/{locale}"
GATEWAYS = "/tenants/{tenant}/stores/{store}/gateways"
GATEWAY = GATEWAYS + "/{gateway}"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    allowed: frozenset[str]
    success: int
    body: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


POLICY = [
    # An anonymous installation for an app key alone; a customer for the back office.
    Route("POST", "/tenants/{tenant}/customers", CREATE_CUSTOMERS, 201, {"locale": "es-ES"}),
    Route("GET", "/tenants/{tenant}/customers", READ_CUSTOMERS, 200),
    Route("GET", CUSTOMER, PROFILE, 200),
    Route("DELETE", CUSTOMER, ERASE, 200),
    Route("POST", f"{CUSTOMER}/consent", APP_OR_ADMIN, 201,
          {"channel": "push", "granted": True, "source": "app"}),
    Route("GET", f"{CUSTOMER}/consent", APP_OR_ADMIN, 200),
    Route("POST", f"{CUSTOMER}/devices", APP_OR_ADMIN, 201,
          {"kind": "fcm", "token": "fcm-token-aaaaaaaaaaaaaaaa"}),
    Route("GET", f"{CUSTOMER}/devices", APP_OR_ADMIN, 200),
    Route("GET", f"{CUSTOMER}/messages", READ_CUSTOMERS, 200),
    Route("GET", "/tenants/{tenant}/analytics/footfall", ANALYTICS, 200,
          params={"since": "2026-11-22T00:00:00Z", "until": "2026-11-23T00:00:00Z"}),
    Route("GET", "/tenants/{tenant}/analytics/footfall/hourly", ANALYTICS, 200,
          params={"since": "2026-11-22T00:00:00Z", "until": "2026-11-23T00:00:00Z"}),
    Route("GET", "/tenants/{tenant}/analytics/occupancy", ANALYTICS, 200,
          params={"since": "2026-11-22T00:00:00Z", "until": "2026-11-23T00:00:00Z"}),
    Route("GET", "/tenants/{tenant}/gateways", ANALYTICS, 200),
    # follow=false: the snapshot, then the stream ends (the client reads it whole).
    Route("GET", "/tenants/{tenant}/presence/live", ANALYTICS, 200,
          params={"follow": "false"}),
    Route("POST", "/tenants/{tenant}/api-keys", KEYS, 201,
          {"role": "app", "name": "web shop"}),
    Route("GET", "/tenants/{tenant}/api-keys", KEYS, 200),
    Route("DELETE", "/tenants/{tenant}/api-keys/{key_id}", KEYS, 200),
    Route("GET", "/tenants/{tenant}/customer-token-keys", KEYS, 200),
    Route("GET", "/tenants/{tenant}/pseudonym-keys", READ_CONFIG, 200),
    Route("GET", "/dead-letters", OPERATOR, 200),
    Route("GET", "/tenants/{tenant}/dead-letters", READ_CONFIG, 200),
    # The routes below answer an allowed caller with 404 (nothing by that key) or 422 (no
    # body): what matters here is that the key got the caller that far, or not.
    Route("GET", "/tenants/{tenant}/analytics/funnel", ANALYTICS, 422),
    Route("POST", "/tenants/{tenant}/customer-token-keys", KEYS, 422, {"kid": "k"}),
    Route("DELETE", "/tenants/{tenant}/customer-token-keys/{kid}", KEYS, 404),
    Route("POST", "/tenants/{tenant}/pseudonym-keys/{key_id}/activate", KEYS, 404),
    Route("POST", "/tenants/{tenant}/pseudonym-keys/{key_id}/retire", KEYS, 404),
    Route("PUT", "/tenants/{tenant}/complements", MARKETING, 422),
    Route("GET", "/tenants/{tenant}/complements", READ_CONFIG, 200),
    Route("GET", f"{CUSTOMER}/coupons", COUPONS, 200),
    Route("GET", f"{CUSTOMER}/journeys", READ_CUSTOMERS, 200),
    Route("POST", f"{CUSTOMER}/locations", APP_OR_ADMIN, 422),
    Route("POST", f"{CUSTOMER}/store-beacon", APP_OR_ADMIN, 422),
    Route("GET", "/tenants/{tenant}/geofences", READ_CONFIG, 200),
    Route("PUT", "/tenants/{tenant}/geofences/{geofence_id}", STORES, 422),
    Route("GET", "/tenants/{tenant}/geofences/{geofence_id}", READ_CONFIG, 404),
    Route("DELETE", "/tenants/{tenant}/geofences/{geofence_id}", STORES, 404),
    Route("GET", "/tenants/{tenant}/locations/recent", LOCATIONS, 200),
    Route("GET", "/tenants/{tenant}/messages/{message_id}/attempts", ANALYTICS, 404),
    Route("POST", "/tenants/{tenant}/messages/{message_id}/opened", APP_OR_ADMIN, 404),
    Route("GET", "/tenants/{tenant}/offers", READ_CONFIG, 200),
    Route("PUT", "/tenants/{tenant}/offers/{key}", MARKETING, 422),
    Route("GET", "/tenants/{tenant}/offers/{key}", READ_CONFIG, 404),
    Route("DELETE", "/tenants/{tenant}/offers/{key}", MARKETING, 404),
    Route("GET", "/tenants/{tenant}/offers/{key}/coupons", READ_CUSTOMERS, 404),
    Route("GET", "/tenants/{tenant}/scenarios", READ_CONFIG, 200),
    Route("PUT", "/tenants/{tenant}/scenarios/{key}", MARKETING, 422),
    Route("GET", "/tenants/{tenant}/scenarios/{key}", READ_CONFIG, 404),
    Route("DELETE", "/tenants/{tenant}/scenarios/{key}", MARKETING, 404),
    Route("POST", "/tenants/{tenant}/scenarios/{key}/simulations", MARKETING, 404, {}),
    Route("GET", "/tenants/{tenant}/scenarios/{key}/simulations", ANALYTICS, 200),
    Route("GET", "/tenants/{tenant}/simulations/{simulation_id}", ANALYTICS, 404),
    Route("GET", "/tenants/{tenant}/scenarios/{key}/report", ANALYTICS, 404),
    Route("GET", "/tenants/{tenant}/preferences", READ_CONFIG, 200),
    Route("PUT", "/tenants/{tenant}/preferences", MARKETING, 200, {"quiet_hours": "off"}),
    Route("GET", "/tenants/{tenant}/segments", READ_CONFIG, 200),
    Route("PUT", "/tenants/{tenant}/segments/{key}", MARKETING, 422),
    Route("GET", "/tenants/{tenant}/segments/{key}", READ_CONFIG, 404),
    Route("DELETE", "/tenants/{tenant}/segments/{key}", MARKETING, 404),
    Route("GET", "/tenants/{tenant}/segments/{key}/versions", READ_CONFIG, 404),
    Route("GET", "/tenants/{tenant}/segments/{key}/count", ANALYTICS, 404),
    Route("GET", "/tenants/{tenant}/stores", READ_CONFIG, 200),
    Route("PUT", "/tenants/{tenant}/stores/{key}", STORES, 422),
    Route("GET", "/tenants/{tenant}/stores/{key}", READ_CONFIG, 404),
    Route("DELETE", "/tenants/{tenant}/stores/{key}", STORES, 404),
    Route("GET", GATEWAYS, READ_CONFIG, 200),
    Route("POST", GATEWAYS, STORES, 404, {"gateway": "gw-1"}),
    Route("POST", f"{GATEWAY}/code", STORES, 404),
    Route("DELETE", GATEWAY, STORES, 404),
    Route("GET", f"{GATEWAY}/health", ANALYTICS, 404),
    Route("GET", f"{GATEWAY}/config", READ_CONFIG, 404),
    Route("PUT", f"{GATEWAY}/config", STORES, 422),
    Route("GET", "/tenants/{tenant}/templates", READ_CONFIG, 200),
    Route("POST", "/tenants/{tenant}/templates/preview", READ_CONFIG, 422),
    Route("PUT", TEMPLATE, MARKETING, 422),
    Route("GET", TEMPLATE, READ_CONFIG, 404),
    Route("DELETE", TEMPLATE, MARKETING, 404),
    Route("GET", "/tenants/{tenant}/web-push/public-key", APP_OR_ADMIN, 200),
    Route("GET", "/tenants/{tenant}/members", MEMBERS, 200),
    Route("POST", "/tenants/{tenant}/members/invitations", MEMBERS, 201,
          {"email": "new@shop.example", "role": "analyst"}),
    Route("DELETE", "/tenants/{tenant}/members/invitations/{invitation_id}", MEMBERS, 404),
    Route("PATCH", "/tenants/{tenant}/members/{member_id}", MEMBERS, 404, {"role": "analyst"}),
    Route("DELETE", "/tenants/{tenant}/members/{member_id}", MEMBERS, 404),
    Route("GET", "/tenants/{tenant}/audit", AUDIT, 200),
]
#: What the shop's app may do, and nothing else.
APP_MAY = {
    ("POST", "/tenants/{tenant}/customers"),
    ("GET", CUSTOMER),
    ("POST", f"{CUSTOMER}/consent"),
    ("GET", f"{CUSTOMER}/consent"),
    ("POST", f"{CUSTOMER}/devices"),
    ("GET", f"{CUSTOMER}/devices"),
    ("GET", f"{CUSTOMER}/coupons"),
    ("GET", "/tenants/{tenant}/web-push/public-key"),
}
#: Open to anyone, or authenticated otherwise: the message's token is the capability
#: (tracked links, opens, unsubscribe), the provider's signature (SMS receipts), the
#: shop's HMAC (webhooks), a member's password or session (signing in, one's own
#: account), an invitation's token, a gateway's one-time enrolment code; the gateway's
#: installer is public (it holds no secret).
OPEN = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
        ("POST", "/auth/login"), ("GET", "/auth/me"), ("POST", "/auth/logout"),
        ("POST", "/auth/password"), ("GET", "/auth/invitations/{token}"),
        ("POST", "/auth/invitations/{token}/accept"),
        ("POST", "/webhooks/{tenant}"), ("GET", "/c/{token}"), ("GET", "/c/{token}/{index}"),
        ("POST", "/o/{token}"), ("GET", "/o/{token}.gif"), ("POST", "/receipts/{channel}"),
        ("POST", "/sms/receipts"), ("POST", "/enrol"), ("GET", "/install/gateway.sh"),
        ("GET", "/u/{token}"), ("POST", "/u/{token}")}


@dataclass(frozen=True, slots=True)
class Signed:
    """A console member's session: the cookie's token and its CSRF token."""

    token: str
    csrf: str


@dataclass
class Api:
    """The API on a real database, with keys and members of every kind, and everything it
    answered."""

    client: TestClient
    engine: Engine
    tenant: str
    keys: dict[str, str]
    #: The tenant's backend, signing tokens for the customers the calls are about.
    backend: ShopBackend
    members: dict[str, Signed] = field(default_factory=dict)
    responses: list[httpx.Response] = field(default_factory=list)
    #: Keys made through the API, each with the one response allowed to show it.
    created: list[tuple[str, httpx.Response]] = field(default_factory=list)

    def fresh_customer(self) -> tuple[str, str]:
        """A signed-in customer: their public id, and the shop's id of them."""
        external_id = f"juan-{secrets.token_hex(6)}"
        with session_scope(self.engine) as session:
            customer = create_customer(
                session, tenant=self.tenant, now=NOW,
                data=CustomerCreate(first_name="Juan", external_id=external_id),
            )
            session.commit()
            return customer.public_id, external_id

    def fresh_key(self, role: Role = Role.APP, tenant: str | None = None) -> str:
        with session_scope(self.engine) as session:
            _row, key = create_key(
                session, role=role, tenant=tenant if tenant is not None else self.tenant,
                created_by="test", now=NOW,
            )
            session.commit()
        self.keys[f"made-{len(self.keys)}"] = key
        return key

    def call(self, route: Route, *, authorization: str | None = None,
             member: Signed | None = None, csrf: bool = True, customer_token: bool = True
             ) -> httpx.Response:
        """`route` with a customer and a key of its own, so that erasing or revoking
        one does not change what the next call sees; as a key (`authorization`) or as a
        console member (with the session's CSRF token unless `csrf` is false). A route
        about one customer (or their message) also gets that customer's token unless
        `customer_token` is false: every caller sends it, only app keys need it."""
        victim = self.fresh_key()
        customer_id, external_id = self.fresh_customer()
        path = route.path.format(
            tenant=self.tenant, customer_id=customer_id,
            key_id=victim.split("_", 2)[1], key="nothing-here", geofence_id="nothing-here",
            channel="push", locale="en-GB", message_id=999_999, member_id=999_999,
            invitation_id=999_999, store="nothing-here", gateway="nothing-here",
            kid="nothing-here", simulation_id=999_999,
        )
        headers = {"Authorization": authorization} if authorization is not None else {}
        if customer_token and ("{customer_id}" in route.path or "{message_id}" in route.path):
            headers |= self.backend.headers(external_id, now=NOW)
        if member is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={member.token}"
            if csrf:
                headers[CSRF_HEADER] = member.csrf
        response: httpx.Response = self.client.request(
            route.method, path, json=route.body, params=route.params, headers=headers
        )
        if route.id == "POST /tenants/{tenant}/api-keys" and response.status_code == 201:
            self.created.append((response.json()["key"], response))
        else:
            self.responses.append(response)
        return response


def sign_in_member(engine: Engine, email: str, memberships: dict[str, MemberRole]) -> Signed:
    """A member with these roles, signed in (a session opened as signing in would)."""
    with session_scope(engine) as session:
        member = create_member(session, email=email, password=PASSWORD, now=NOW)
        for tenant, role in memberships.items():
            grant(session, member=member, tenant=tenant, role=role, now=NOW)
        row, token = open_session(session, member=member, now=NOW, policy=SessionPolicy())
        session.commit()
        return Signed(token=token, csrf=row.csrf_token)


@pytest.fixture
def api(engine: Engine, migrated_url: str, tenant: str) -> Iterator[Api]:
    secret = {"keys": [{"key_id": KEY_ID, "secret": KEY_SECRET}]}
    settings = cloud_settings(
        tenant=tenant, database_url=migrated_url, tenants={tenant: secret, OTHER_TENANT: secret}
    )
    with TestClient(create_app(settings, engine=engine, now=lambda: NOW)) as client:
        api = Api(client=client, engine=engine, tenant=tenant, keys={},
                  backend=register_shop_backend(engine, tenant=tenant))
        for name, role, owner in [
            ("admin", Role.ADMIN, tenant), ("app", Role.APP, tenant),
            ("other admin", Role.ADMIN, OTHER_TENANT), ("other app", Role.APP, OTHER_TENANT),
            ("operator", Role.OPERATOR, None), ("revoked admin", Role.ADMIN, tenant),
        ]:
            with session_scope(engine) as session:
                _row, api.keys[name] = create_key(
                    session, role=role, tenant=owner, created_by="test", now=NOW
                )
                session.commit()
        with session_scope(engine) as session:
            revoke_key(session, key_id=api.keys["revoked admin"].split("_", 2)[1], now=NOW)
            session.commit()
        api.keys["settings operator"] = OPERATOR_KEY
        for member_role in MEMBER_ROLES:
            api.members[member_role] = sign_in_member(
                engine, f"{member_role}@{tenant}.example", {tenant: MemberRole(member_role)}
            )
        api.members["other owner"] = sign_in_member(
            engine, f"owner@{OTHER_TENANT}.example", {OTHER_TENANT: MemberRole.OWNER}
        )
        yield api


#: Callers whose key does not authenticate, with how they present it.
UNAUTHENTICATED: dict[str, Callable[[Api], str | None]] = {
    "no header": lambda api: None,
    "empty bearer": lambda api: "Bearer ",
    "another scheme": lambda api: f"Basic {api.keys['admin']}",
    "malformed": lambda api: "Bearer not-a-key",
    "unknown key": lambda api: f"Bearer {generate_key()}",
    "wrong secret": lambda api: f"Bearer {api.keys['admin'][:16]}{'A' * 43}",
    "revoked key": lambda api: f"Bearer {api.keys['revoked admin']}",
}
#: Callers with a valid key, and who they are for the tenant in the path (None: a key of
#: another tenant, which carries nothing here).
AUTHENTICATED = {
    "admin": "admin", "app": "app", "operator": "operator",
    "settings operator": "operator", "other admin": None, "other app": None,
}
#: Signed-in members, and their role in the tenant in the path (None: not a member).
SIGNED_IN = {role: role for role in MEMBER_ROLES} | {"other owner": None}


@pytest.mark.parametrize("route", POLICY, ids=lambda route: route.id)
def test_each_route_admits_exactly_its_roles(api: Api, route: Route) -> None:
    for caller, authorization in UNAUTHENTICATED.items():
        response = api.call(route, authorization=authorization(api))
        assert response.status_code == 401, (caller, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
    ended = api.call(route, member=Signed(token="no-such-session", csrf="x"))
    assert ended.status_code == 401, ended.text
    for caller, who in AUTHENTICATED.items():
        response = api.call(route, authorization=f"Bearer {api.keys[caller]}")
        expected = route.success if who is not None and who in route.allowed else 403
        assert response.status_code == expected, (caller, response.text)
        if expected == 403:
            assert "www-authenticate" not in response.headers
    for caller, who in SIGNED_IN.items():
        response = api.call(route, member=api.members[caller])
        expected = route.success if who is not None and who in route.allowed else 403
        assert response.status_code == expected, (caller, response.text)


def test_a_member_changes_nothing_without_the_sessions_csrf_token(api: Api) -> None:
    for route in POLICY:
        if route.method == "GET" or "owner" not in route.allowed:
            continue
        for token in ("", "wrong"):
            forged = Signed(token=api.members["owner"].token, csrf=token)
            response = api.call(route, member=forged, csrf=bool(token))
            assert response.status_code == 403, (route.id, response.text)
            assert CSRF_HEADER in response.json()["detail"]


def test_every_route_is_in_the_policy(api: Api) -> None:
    """Read from the OpenAPI document: it lists every operation, included routers too."""
    paths: dict[str, dict[str, Any]] = api.client.get("/openapi.json").json()["paths"]
    operations = {(method.upper(), path) for path, item in paths.items() for method in item}
    assert operations == {(route.method, route.path) for route in POLICY} | OPEN
    for route in POLICY:
        security = paths[route.path][route.method.lower()].get("security")
        # Documented for API clients: a key, or a console session.
        assert security == [{"HTTPBearer": []}, {"APIKeyCookie": []}], route.id


def test_the_app_role_can_do_exactly_its_list(api: Api) -> None:
    done = {
        (route.method, route.path) for route in POLICY
        if api.call(route, authorization=f"Bearer {api.keys['app']}").status_code < 400
    }
    assert done == APP_MAY


def test_an_app_key_alone_reaches_only_an_anonymous_installation(api: Api) -> None:
    """Without the customer's token an app key is refused (401, naming the header) on
    every route about a customer or a message; it still makes anonymous installations."""
    app = f"Bearer {api.keys['app']}"
    done = set()
    for route in POLICY:
        response = api.call(route, authorization=app, customer_token=False)
        if response.status_code < 400:
            done.add((route.method, route.path))
        elif route.id in {f"{method} {path}" for method, path in APP_MAY} | {
                "POST /tenants/{tenant}/messages/{message_id}/opened"}:
            assert response.status_code == 401, (route.id, response.text)
            assert "X-Customer-Token" in response.json()["detail"]
    assert done == {("POST", "/tenants/{tenant}/customers"),
                    ("GET", "/tenants/{tenant}/web-push/public-key")}


def test_keys_appear_nowhere_but_in_their_creation_response(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for route in POLICY:
        for authorization in UNAUTHENTICATED.values():
            api.call(route, authorization=authorization(api))
        for caller in AUTHENTICATED:
            api.call(route, authorization=f"Bearer {api.keys[caller]}")
        for member in SIGNED_IN:
            api.call(route, member=api.members[member])
    assert len(api.created) == 4  # by the admin, both operators and the owner
    for key, response in api.created:
        assert response.json()["key"] == key
        assert api.client.get(
            f"/tenants/{api.tenant}/gateways", headers={"Authorization": f"Bearer {key}"}
        ).status_code == 403  # made as app keys
    with api.engine.connect() as connection:
        database = "\n".join(
            repr(tuple(row)) for table in inspect(connection).get_table_names()
            for row in connection.execute(text(f'SELECT * FROM "{table}"'))
        )
    answered = "\n".join(response.text for response in api.responses)
    assert "refused" in caplog.text  # the scan does see the log
    every_key = [*api.keys.values(), *(key for key, _response in api.created)]
    assert len(every_key) > 100
    for key in every_key:
        secret = key.split("_", 2)[2]
        for where, content in [("log", caplog.text), ("responses", answered),
                               ("database", database)]:
            assert secret[:16] not in content, f"a key's secret is in the {where}"
    for signed in api.members.values():
        for where, content in [("log", caplog.text), ("database", database)]:
            assert signed.token[:16] not in content, f"a session's token is in the {where}"
    for where, content in [("log", caplog.text), ("responses", answered),
                           ("database", database)]:
        assert PASSWORD not in content, f"a password is in the {where}"


def test_refusals_are_counted_by_reason(api: Api) -> None:
    def count(reason: str) -> float:
        return REGISTRY.get_sample_value(
            "vitrina_api_auth_refusals_total", {"reason": reason}
        ) or 0.0

    route = POLICY[1]  # GET customers: admin only
    before = {reason: count(reason) for reason in ("missing", "malformed", "unknown",
                                                   "mismatch", "revoked", "forbidden")}
    for caller in ("no header", "malformed", "unknown key", "wrong secret", "revoked key"):
        api.call(route, authorization=UNAUTHENTICATED[caller](api))
    api.call(route, authorization=f"Bearer {api.keys['app']}")
    assert {reason: count(reason) - value for reason, value in before.items()} == {
        "missing": 1, "malformed": 1, "unknown": 1, "mismatch": 1, "revoked": 1, "forbidden": 1,
    }


def test_refusals_say_what_is_wrong(api: Api) -> None:
    customers = Route("GET", "/tenants/{tenant}/customers", READ_CUSTOMERS, 200)
    missing = api.call(customers, authorization=None).json()["detail"]
    assert missing == (
        "missing API key: send 'Authorization: Bearer <key>' (or sign in to the console)"
    )
    invalid = api.call(customers, authorization="Bearer not-a-key").json()["detail"]
    assert invalid == "invalid API key"
    revoked = api.call(customers, authorization=f"Bearer {api.keys['revoked admin']}")
    assert revoked.json()["detail"] == "API key has been revoked"
    other = api.call(customers, authorization=f"Bearer {api.keys['other admin']}")
    assert other.json()["detail"] == f"this API key is not valid for tenant {api.tenant!r}"
    app = api.call(customers, authorization=f"Bearer {api.keys['app']}")
    assert app.json()["detail"] == "an app key may not do this (it needs customers.read)"
    analyst = api.call(customers, member=api.members["analyst"])
    assert analyst.json()["detail"] == "an analyst may not do this (it needs customers.read)"
    stranger = api.call(customers, member=api.members["other owner"])
    assert stranger.json()["detail"] == f"you are not a member of tenant {api.tenant!r}"
    operator = api.call(customers, authorization=f"Bearer {api.keys['operator']}")
    assert "operator keys do not reach tenant data" in operator.json()["detail"]


@pytest.mark.parametrize("public", [True, False])
def test_metrics_are_open_unless_configured_otherwise(
    engine: Engine, migrated_url: str, tenant: str, public: bool
) -> None:
    settings = cloud_settings(
        tenant=tenant, database_url=migrated_url, api={"metrics_public": public}
    )
    with TestClient(create_app(settings, engine=engine)) as client:
        anonymous = client.get("/metrics")
        operator = client.get("/metrics", headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
        assert client.get("/healthz").status_code == 200
    assert operator.status_code == 200
    assert anonymous.status_code == (200 if public else 401)


#: What a header can carry (HTTP headers are bytes; the server reads them as Latin-1).
header_text = st.binary(max_size=120).map(lambda raw: raw.decode("latin-1").strip()).filter(
    lambda value: "\r" not in value and "\n" not in value and "\x00" not in value)
credentials = st.one_of(
    header_text, st.just(generate_key()),
    st.from_regex(r"vk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", fullmatch=True),
)


@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
def test_any_credentials_are_refused_cleanly(engine: Engine, migrated_url: str, tenant: str
                                             ) -> None:
    """Whatever the bearer key, the session cookie, the CSRF token or the customer token
    hold, a stranger gets a 401 or a 403 (a mistyped header a 400; after many wrong keys,
    a 429), never a server error: each is parsed before anything is looked up with it."""
    app = create_app(cloud_settings(tenant=tenant, database_url=migrated_url), engine=engine)
    client = TestClient(app, raise_server_exceptions=False)

    @settings(max_examples=30, deadline=None)
    @given(key=credentials, cookie=header_text, csrf=header_text, token=header_text)
    def strangers(key: str, cookie: str, csrf: str, token: str) -> None:
        for headers in ({"Authorization": f"Bearer {key}"}, {"Authorization": key},
                        {"Cookie": f"{SESSION_COOKIE}={cookie}", CSRF_HEADER: csrf},
                        {"Authorization": f"Bearer {key}", "X-Customer-Token": token}):
            raw = [(name.encode(), value.encode("latin-1")) for name, value in headers.items()]
            for method, path in (("POST", f"/tenants/{tenant}/customers"),
                                 ("GET", "/auth/me")):
                response = client.request(method, path, headers=raw, json={})
                assert response.status_code in (400, 401, 403, 429), (headers, response.text)

    strangers()
