"""Wrong API keys and wrong passwords, as the people on both sides see them: a burst of
wrong tries gets 429 with Retry-After, while the right key (or a browser that signed in
before) still gets in at once, another address is not held back, and once the wait is
over tries are welcome again. The clock is the app's; nothing sleeps.

One kind of database is enough here: the counting itself runs on both in
tests/cloud/auth/test_throttle.py."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.auth.keys import key_id_of
from cloud.auth.permissions import MemberRole
from cloud.db import make_engine
from tests.cloud.factories import (
    CONSOLE_PASSWORD,
    FROM_CONSOLE,
    Clock,
    add_member,
    bearer,
    cloud_settings,
    issue_key,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TENANT = "shop"
#: Small numbers, so a burst is a few requests.
KEY_LIMITS = {"key_free_failures": 3, "key_backoff_s": 10, "key_backoff_max_s": 60,
              "key_window_minutes": 15}
LOGIN_LIMITS = {"login_free_failures": 3, "login_backoff_s": 30,
                "login_backoff_max_s": 120, "login_window_minutes": 15}
GUESSER, NEIGHBOUR, OWNERS_DESK = "203.0.113.5", "198.51.100.7", "192.0.2.44"
PROXY = "10.0.0.2"
OWNER = "owner@shop.example"


@pytest.fixture
def database(schema_templates: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    target = tmp_path / "vitrina.db"
    shutil.copyfile(schema_templates["sqlite"], target)
    url = f"sqlite:///{target}"
    engine = make_engine(url)
    yield url, engine
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


class Api:
    """The API as clients at different addresses reach it."""

    def __init__(self, database: tuple[str, Engine], clock: Clock, **changes: Any) -> None:
        url, self.engine = database
        api = {**KEY_LIMITS, **changes.pop("api", {})}
        console = {**LOGIN_LIMITS, **changes.pop("console", {})}
        self.settings = cloud_settings(tenant=TENANT, database_url=url, api=api,
                                       console=console, **changes)
        self.clock = clock
        self.app = self.process()
        self._clients: list[TestClient] = []

    def process(self) -> FastAPI:
        """Another API process on the same database (an app of its own)."""
        return create_app(self.settings, engine=self.engine, now=self.clock)

    def at(self, address: str, app: FastAPI | None = None) -> TestClient:
        """A client (a browser, a script) whose requests come from `address`."""
        client = TestClient(app or self.app, client=(address, 40000))
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture
def api(database: tuple[str, Engine], clock: Clock) -> Iterator[Api]:
    made = Api(database, clock)
    yield made
    made.close()


def offers(client: TestClient, key: str, **headers: str) -> Any:
    return client.get(f"/tenants/{TENANT}/offers", headers={**bearer(key), **headers})


def wrong_secret(key: str) -> str:
    """The same key id with another secret: what a guesser of one key sends."""
    return key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")


def test_wrong_keys_get_429_while_the_right_key_and_other_addresses_carry_on(
    api: Api, clock: Clock,
) -> None:
    key = issue_key(api.engine, tenant=TENANT)
    guesser = api.at(GUESSER)
    for _ in range(4):  # three free, the fourth counted and blocking
        assert offers(guesser, wrong_secret(key)).status_code == 401
    refused = offers(guesser, wrong_secret(key))
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "10"
    assert refused.json() == {"detail": "too many failed API keys: try again in 10 s"}

    # The key's holder, from the guesser's very address: in at once, and nothing counted.
    assert offers(guesser, key).status_code == 200
    # Another address with its own wrong key is told 401, not made to wait...
    neighbour = api.at(NEIGHBOUR)
    other = issue_key(api.engine, tenant=TENANT)
    assert offers(neighbour, wrong_secret(other)).status_code == 401
    # ...but the attacked key id is blocked from every address (many addresses, one key).
    assert offers(neighbour, wrong_secret(key)).status_code == 429

    # The wait passes: a try is heard again (401), and the next failure waits twice as long.
    clock.now += timedelta(seconds=10)
    assert offers(guesser, wrong_secret(key)).status_code == 401
    assert offers(guesser, wrong_secret(key)).headers["Retry-After"] == "20"
    # A quiet window after the block: the count is forgotten, three free tries again.
    clock.now += timedelta(seconds=20) + timedelta(minutes=15, seconds=1)
    for _ in range(4):
        assert offers(guesser, wrong_secret(key)).status_code == 401
    assert offers(guesser, wrong_secret(key)).status_code == 429


def test_one_address_trying_many_keys_is_held_back_and_other_processes_see_it(
    api: Api,
) -> None:
    key = issue_key(api.engine, tenant=TENANT)
    # Two API processes on one database: the failures on each count together.
    first, second = api.at(GUESSER), api.at(GUESSER, api.process())
    for attempt in range(4):
        client = first if attempt % 2 else second
        assert offers(client, f"vk_{attempt:012x}_{'x' * 43}").status_code == 401
    assert offers(first, "not even a key").status_code == 429
    assert offers(second, f"vk_{99:012x}_{'x' * 43}").status_code == 429
    assert offers(second, key).status_code == 200
    assert key_id_of(key) is not None


@pytest.mark.parametrize(("trusted", "counted_as_one"), [([], True), (["10.0.0.0/8"], False)])
def test_forwarded_addresses_are_believed_only_from_a_trusted_proxy(
    database: tuple[str, Engine], clock: Clock, trusted: list[str], counted_as_one: bool,
) -> None:
    """Behind a listed proxy, each forwarded client is counted apart; without one, what
    anyone writes in X-Forwarded-For is ignored, so it cannot dodge the count."""
    api = Api(database, clock, api={"trusted_proxies": trusted})
    try:
        proxy = api.at(PROXY)
        for _ in range(4):
            assert offers(proxy, "vk_bad", **{"X-Forwarded-For": GUESSER}).status_code == 401
        other = offers(proxy, "vk_bad", **{"X-Forwarded-For": NEIGHBOUR})
        assert other.status_code == (429 if counted_as_one else 401)
        # A client that writes an address of its own before the proxy's is still counted
        # as what the proxy saw (the rightmost address no trusted proxy holds).
        spoofed = offers(proxy, "vk_bad", **{"X-Forwarded-For": f"{NEIGHBOUR}, {GUESSER}"})
        assert spoofed.status_code == 429
        # A stranger's X-Forwarded-For is never believed, whatever it names.
        stranger = api.at(OWNERS_DESK)
        assert offers(stranger, "vk_bad", **{"X-Forwarded-For": GUESSER}).status_code == 401
    finally:
        api.close()


def login(client: TestClient, password: str) -> Any:
    return client.post("/auth/login", json={"email": OWNER, "password": password},
                       headers=FROM_CONSOLE)


def test_a_guesser_elsewhere_does_not_lock_the_owner_out_of_their_own_browser(
    api: Api, clock: Clock,
) -> None:
    add_member(api.engine, email=OWNER, tenant=TENANT, role=MemberRole.OWNER)
    desk = api.at(OWNERS_DESK)
    signed_in = login(desk, CONSOLE_PASSWORD)  # this browser is now known
    assert signed_in.status_code == 200
    [device] = [cookie for cookie in signed_in.headers.get_list("set-cookie")
                if cookie.startswith("vitrina_device=")]
    assert all(part in device for part in ("Path=/auth/login", "HttpOnly", "SameSite=strict"))
    assert desk.post("/auth/logout", headers={
        **FROM_CONSOLE, "X-CSRF-Token": signed_in.json()["csrf_token"]}).status_code == 204

    guesser = api.at(GUESSER)
    # A made-up device cookie buys the guesser nothing.
    member_id = device.split("=", 1)[1].split(".", 1)[0].strip('"')
    guesser.cookies.set("vitrina_device", f"{member_id}.{'0' * 64}", path="/auth/login")
    for _ in range(4):
        assert login(guesser, "a guess").status_code == 401
    refused = login(guesser, CONSOLE_PASSWORD)  # blocked: not even the right one is tried
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "30"
    # The account is under attack from anywhere new, so a fresh browser waits too...
    assert login(api.at(NEIGHBOUR), CONSOLE_PASSWORD).status_code == 429
    # ...but the owner's own browser signs in at once.
    assert login(desk, CONSOLE_PASSWORD).status_code == 200
    # And once the wait is over, a fresh browser with the right password is in.
    clock.now += timedelta(seconds=30)
    assert login(api.at(NEIGHBOUR), CONSOLE_PASSWORD).status_code == 200
