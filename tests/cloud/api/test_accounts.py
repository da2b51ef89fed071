"""Console accounts over HTTP, as a browser uses them: signing in and out, the session
cookie, back-off after failures, expiry, password changes and invitations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.auth.keys import key_id_of
from cloud.auth.permissions import MemberRole
from tests.cloud.factories import (
    CONSOLE_PASSWORD,
    FROM_CONSOLE,
    OPERATOR_KEY,
    Clock,
    add_member,
    bearer,
    cloud_settings,
    console_login,
    issue_key,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OWNER = "owner@shop.example"


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


def console(engine: Engine, migrated_url: str, tenant: str, clock: Clock,
            **changes: Any) -> TestClient:
    settings = cloud_settings(
        tenant=tenant, database_url=migrated_url,
        console={"session_idle_minutes": 30, "session_hours": 8, **changes.pop("console", {})},
        **changes,
    )
    return TestClient(create_app(settings, engine=engine, now=clock))


@pytest.fixture
def client(engine: Engine, migrated_url: str, tenant: str, clock: Clock
           ) -> Iterator[TestClient]:
    add_member(engine, email=OWNER, tenant=tenant, role=MemberRole.OWNER)
    with console(engine, migrated_url, tenant, clock) as test_client:
        yield test_client


def login(client: TestClient, password: str, email: str = OWNER) -> Any:
    return client.post("/auth/login", json={"email": email, "password": password},
                       headers=FROM_CONSOLE)


def test_signing_in_sets_a_session_cookie_only_the_server_reads(
    client: TestClient, tenant: str
) -> None:
    response = login(client, CONSOLE_PASSWORD)
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("vitrina_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP in development: see the next test
    body = response.json()
    assert body["member"]["email"] == OWNER
    assert body["memberships"] == [{"tenant": tenant, "role": "owner"}]
    assert len(body["csrf_token"]) >= 43
    me = client.get("/auth/me")
    assert me.status_code == 200
    assert me.json()["csrf_token"] == body["csrf_token"]
    assert client.get(f"/tenants/{tenant}/offers").status_code == 200


@pytest.mark.parametrize(("changes", "secure"), [
    ({"tracking": {"public_base_url": "https://shop.example"}}, True),
    ({"console": {"secure_cookies": "always"}}, True),
    ({"tracking": {"public_base_url": "https://shop.example"},
      "console": {"secure_cookies": "never"}}, False),
])
def test_the_cookie_is_secure_behind_tls(
    engine: Engine, migrated_url: str, tenant: str, clock: Clock,
    changes: dict[str, Any], secure: bool,
) -> None:
    add_member(engine, email=OWNER, tenant=tenant, role=MemberRole.OWNER)
    with console(engine, migrated_url, tenant, clock, **changes) as client:
        cookie = login(client, CONSOLE_PASSWORD).headers["set-cookie"]
    assert ("Secure" in cookie) is secure


def test_sign_in_needs_the_consoles_header(client: TestClient) -> None:
    forged = client.post("/auth/login", json={"email": OWNER, "password": CONSOLE_PASSWORD})
    assert forged.status_code == 403
    assert "X-Requested-With" in forged.json()["detail"]
    assert "set-cookie" not in forged.headers


def test_a_wrong_password_and_an_unknown_address_get_the_same_answer(
    client: TestClient,
) -> None:
    wrong = login(client, "not the password")
    unknown = login(client, CONSOLE_PASSWORD, email="nobody@shop.example")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "wrong email address or password"}
    assert "set-cookie" not in wrong.headers
    assert client.get("/auth/me").status_code == 401


def test_bad_bodies_are_refused_without_echoing_the_password(client: TestClient) -> None:
    for body in ({"email": OWNER}, {"email": "not an address", "password": "x"},
                 {"email": OWNER, "password": "secret-value", "extra": 1},
                 {"email": OWNER, "password": "p" * 300}):
        response = client.post("/auth/login", json=body, headers=FROM_CONSOLE)
        assert response.status_code == 422, body
        assert "secret-value" not in response.text
        assert "p" * 300 not in response.text


def test_repeated_failures_wait_longer_and_longer(client: TestClient, clock: Clock) -> None:
    for _ in range(5):
        assert login(client, "a guess").status_code == 401
    blocked = login(client, "a guess")
    assert blocked.status_code == 401  # the sixth failure is counted, and it blocks
    for wait in (30, 60):
        refused = login(client, CONSOLE_PASSWORD)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == str(wait)
        assert f"try again in {wait} s" in refused.json()["detail"]
        clock.now += timedelta(seconds=wait)
        assert login(client, "a guess").status_code == 401
    clock.now += timedelta(seconds=120)
    assert login(client, CONSOLE_PASSWORD).status_code == 200


def test_signing_out_ends_the_session(client: TestClient, tenant: str) -> None:
    headers = console_login(client, OWNER)
    cookie = client.cookies.get("vitrina_session")
    out = client.post("/auth/logout", headers=headers)
    assert out.status_code == 204
    assert 'vitrina_session=""' in out.headers["set-cookie"]
    assert client.get("/auth/me").status_code == 401
    # The old cookie, kept by someone, opens nothing either.
    stolen = client.get(f"/tenants/{tenant}/offers",
                        headers={"Cookie": f"vitrina_session={cookie}"})
    assert stolen.status_code == 401


def test_a_session_ends_when_idle_and_at_its_lifetime(
    client: TestClient, clock: Clock, tenant: str
) -> None:
    console_login(client, OWNER)
    clock.now += timedelta(minutes=29)
    assert client.get("/auth/me").status_code == 200
    clock.now += timedelta(minutes=31)
    expired = client.get(f"/tenants/{tenant}/offers")
    assert expired.status_code == 401
    assert "sign in" in expired.json()["detail"]
    console_login(client, OWNER)
    for _ in range(8 * 3 - 1):
        clock.now += timedelta(minutes=20)
        assert client.get("/auth/me").status_code == 200
    clock.now += timedelta(minutes=20)
    assert client.get("/auth/me").status_code == 401


def test_changes_need_the_csrf_token_of_the_session(client: TestClient, tenant: str) -> None:
    headers = console_login(client, OWNER)
    url = f"/tenants/{tenant}/complements"
    rules = [{"from_category": "washers", "to_category": "dryers"}]
    assert client.put(url, json=rules).status_code == 403
    assert client.put(url, json=rules, headers=FROM_CONSOLE).status_code == 403
    other = client.put(url, json=rules, headers={**headers, "X-CSRF-Token": "x" * 43})
    assert other.status_code == 403
    assert client.put(url, json=rules, headers=headers).status_code == 200


def test_a_password_change_ends_every_other_session(
    client: TestClient, engine: Engine, migrated_url: str, tenant: str, clock: Clock
) -> None:
    with console(engine, migrated_url, tenant, clock) as elsewhere:
        console_login(elsewhere, OWNER)
        headers = console_login(client, OWNER)
        change = {"current_password": "wrong one", "new_password": "a brand new pass phrase"}
        wrong = client.post("/auth/password", json=change, headers=headers)
        assert wrong.status_code == 422
        assert wrong.json()["detail"] == "the current password does not match"
        short = client.post("/auth/password", headers=headers,
                            json={"current_password": CONSOLE_PASSWORD, "new_password": "short"})
        assert short.status_code == 422
        assert client.post("/auth/password", json={**change, "current_password":
                           CONSOLE_PASSWORD}).status_code == 403  # no CSRF token
        done = client.post("/auth/password", headers=headers,
                           json={**change, "current_password": CONSOLE_PASSWORD})
        assert done.status_code == 204
        assert client.get("/auth/me").status_code == 200
        assert elsewhere.get("/auth/me").status_code == 401
    assert login(client, CONSOLE_PASSWORD).status_code == 401
    assert login(client, "a brand new pass phrase").status_code == 200


def test_an_invitation_makes_a_new_member_who_is_signed_in(
    client: TestClient, engine: Engine, migrated_url: str, tenant: str, clock: Clock
) -> None:
    headers = console_login(client, OWNER)
    invited = client.post(f"/tenants/{tenant}/members/invitations", headers=headers,
                          json={"email": "Bo@Shop.example", "role": "marketer"})
    assert invited.status_code == 201, invited.text
    link = invited.json()["accept_url"]
    assert link.startswith("http://127.0.0.1:8000/console/invitations/")
    token = link.rsplit("/", 1)[1]
    listed = client.get(f"/tenants/{tenant}/members").json()
    assert [m["email"] for m in listed["invitations"]] == ["bo@shop.example"]
    assert token not in str(listed)
    with console(engine, migrated_url, tenant, clock) as browser:
        offer = browser.get(f"/auth/invitations/{token}").json()
        assert offer == {"tenant": tenant, "email": "bo@shop.example", "role": "marketer",
                         "has_account": False}
        no_password = browser.post(f"/auth/invitations/{token}/accept", json={},
                                   headers=FROM_CONSOLE)
        assert no_password.status_code == 422
        joined = browser.post(f"/auth/invitations/{token}/accept", headers=FROM_CONSOLE,
                              json={"password": "bo's own pass phrase", "name": "Bo"})
        assert joined.status_code == 200, joined.text
        assert joined.json()["memberships"] == [{"tenant": tenant, "role": "marketer"}]
        assert browser.get(f"/tenants/{tenant}/offers").status_code == 200
        assert browser.get(f"/tenants/{tenant}/members").status_code == 403
        again = browser.post(f"/auth/invitations/{token}/accept", headers=FROM_CONSOLE,
                             json={"password": "another pass phrase"})
        assert again.status_code == 404
        assert browser.get(f"/auth/invitations/{token}").status_code == 404
    members = client.get(f"/tenants/{tenant}/members").json()
    assert [(m["email"], m["role"]) for m in members["members"]] == [
        ("bo@shop.example", "marketer"), (OWNER, "owner")]
    assert members["invitations"] == []


def test_an_address_with_an_account_joins_by_signing_in_as_it(
    client: TestClient, engine: Engine, migrated_url: str, tenant: str, clock: Clock
) -> None:
    add_member(engine, email="cy@shop.example", tenant="another-shop", role=MemberRole.OWNER)
    headers = console_login(client, OWNER)
    link = client.post(f"/tenants/{tenant}/members/invitations", headers=headers,
                       json={"email": "cy@shop.example", "role": "analyst"}).json()["accept_url"]
    token = link.rsplit("/", 1)[1]
    with console(engine, migrated_url, tenant, clock) as browser:
        assert browser.get(f"/auth/invitations/{token}").json()["has_account"] is True
        anonymous = browser.post(f"/auth/invitations/{token}/accept", json={},
                                 headers=FROM_CONSOLE)
        assert anonymous.status_code == 401
        assert "sign in" in anonymous.json()["detail"]
        console_login(browser, OWNER)  # signed in, but as someone else
        assert browser.post(f"/auth/invitations/{token}/accept", json={},
                            headers=FROM_CONSOLE).status_code == 401
        console_login(browser, "cy@shop.example")
        joined = browser.post(f"/auth/invitations/{token}/accept", json={},
                              headers=FROM_CONSOLE)
        assert joined.status_code == 200
        assert joined.json()["memberships"] == [
            {"tenant": "another-shop", "role": "owner"}, {"tenant": tenant, "role": "analyst"}]


def test_withdrawn_and_expired_invitations_open_nothing(
    client: TestClient, clock: Clock, tenant: str
) -> None:
    headers = console_login(client, OWNER)
    url = f"/tenants/{tenant}/members/invitations"
    first = client.post(url, headers=headers, json={"email": "a@shop.example", "role": "analyst"})
    second = client.post(url, headers=headers, json={"email": "b@shop.example", "role": "analyst"})
    withdrawn = client.delete(f"{url}/{first.json()['id']}", headers=headers)
    assert withdrawn.status_code == 200
    assert client.get(f"/auth/invitations/{first.json()['accept_url'].rsplit('/', 1)[1]}"
                      ).status_code == 404
    clock.now += timedelta(days=7)
    console_login(client, OWNER)
    token = second.json()["accept_url"].rsplit("/", 1)[1]
    expired = client.get(f"/auth/invitations/{token}")
    assert expired.status_code == 404
    assert expired.json()["detail"] == "this invitation is not valid (used, withdrawn or expired)"


def test_roles_change_and_members_leave_but_a_tenant_keeps_an_owner(
    client: TestClient, engine: Engine, tenant: str
) -> None:
    analyst_id = add_member(engine, email="dee@shop.example", tenant=tenant,
                                     role=MemberRole.ANALYST)
    headers = console_login(client, OWNER)
    members = client.get(f"/tenants/{tenant}/members").json()["members"]
    me = next(m["id"] for m in members if m["email"] == OWNER)
    demote = client.patch(f"/tenants/{tenant}/members/{me}", json={"role": "marketer"},
                          headers=headers)
    assert demote.status_code == 409
    assert "last owner" in demote.json()["detail"]
    assert client.delete(f"/tenants/{tenant}/members/{me}", headers=headers).status_code == 409
    promoted = client.patch(f"/tenants/{tenant}/members/{analyst_id}", json={"role": "owner"},
                            headers=headers)
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "owner"
    assert client.delete(f"/tenants/{tenant}/members/{me}", headers=headers).status_code == 200
    assert client.get(f"/tenants/{tenant}/offers").status_code == 403  # no longer a member
    assert client.get("/auth/me").json()["memberships"] == []


def test_an_operator_key_invites_a_tenants_first_owner(
    client: TestClient, engine: Engine, tenant: str
) -> None:
    invited = client.post(f"/tenants/{tenant}/members/invitations",
                          headers=bearer(OPERATOR_KEY),
                          json={"email": "first@shop.example", "role": "owner"})
    assert invited.status_code == 201
    assert invited.json()["invited_by"] == key_id_of(OPERATOR_KEY)
    admin = bearer(issue_key(engine, tenant=tenant))
    assert client.get(f"/tenants/{tenant}/members", headers=admin).status_code == 200
