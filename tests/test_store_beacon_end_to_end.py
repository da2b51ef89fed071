"""The store beacon end to end, every part its own process: the shop's app reports over
HTTP, with its customer's token, that the phone noticed the store's beacon -> `vitrina-cloud
serve` on PostgreSQL -> a push request at the local FCM server. An id recorded earlier and
replayed is refused and logged; a customer without a yes to location-based marketing is
refused and gets nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.welcome import configure_welcome
from provisioning.local_broker import LocalBroker
from sandbox.fcm import make_token
from shared.beacon import ROTATION_PERIOD_S, advert_at, store_beacon_key
from shared.pseudonym import TenantKey
from tests.support.stack import KEY_ID, KEY_SECRET, STORE, Stack, running_stack

SHOP_UUID = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"


@pytest.fixture
def stack(broker: LocalBroker, mqtt_namespace: str, postgres_url: str, tmp_path: Path
          ) -> Iterator[Stack]:
    with running_stack(broker=broker, tenant=mqtt_namespace, database_url=postgres_url,
                       workdir=tmp_path) as running:
        configure_welcome(running.api, running.tenant, running.admin_key)
        admin = {"Authorization": f"Bearer {running.admin_key}"}
        base = f"{running.api}/tenants/{running.tenant}/stores/{STORE}"
        for method, url, body in (
            ("PUT", base, {"name": "Centro", "time_zone": "Europe/Madrid"}),
            ("POST", f"{base}/gateways", {"gateway": "gw-1"}),
            ("PUT", f"{base}/gateways/gw-1/config", {"beacon": {"uuid": SHOP_UUID}}),
        ):
            answer = httpx.request(method, url, json=body, headers=admin, timeout=10.0)
            assert answer.status_code in (200, 201, 202), answer.text
        yield running


def sign_up(stack: Stack, name: str, *, location_consent: bool) -> tuple[str, dict[str, str], str]:
    """The app's sign-up (as `tests.support.stack.register`, without the app beacon): the
    customer's id, the token headers the app sends for them, and their push token."""
    base = f"{stack.api}/tenants/{stack.tenant}/customers"
    token = make_token(name)
    signed_in = stack.backend.headers(f"shop-user-{name}", now=datetime.now(UTC))
    with stack.as_app() as client:
        created = client.post(base, headers=signed_in, json={
            "email": f"{name}@example.com", "first_name": name})
        assert created.status_code == 201, created.text
        customer = created.json()["id"]
        answer = client.post(f"{base}/{customer}/devices", headers=signed_in,
                             json={"kind": "fcm", "token": token})
        assert answer.status_code == 201, answer.text
        for channel, granted in (("push", True), ("location_marketing", location_consent)):
            answer = client.post(f"{base}/{customer}/consent", headers=signed_in, json={
                "channel": channel, "granted": granted, "source": "app.signup"})
            assert answer.status_code == 201, answer.text
    return customer, signed_in, token


def ranged(stack: Stack, at: float) -> dict[str, Any]:
    """What the phone's ranging reads at `at`: the store's rotating major and minor."""
    key = store_beacon_key(TenantKey.from_text(KEY_ID, KEY_SECRET), tenant=stack.tenant,
                           store=STORE)
    advert = advert_at(key, at)
    return {"uuid": SHOP_UUID, "major": advert.major, "minor": advert.minor}


def test_an_app_report_of_the_store_beacon_ends_in_one_push(stack: Stack) -> None:
    juan, juan_token, juan_push = sign_up(stack, "juan", location_consent=True)
    ana, ana_token, _ana_push = sign_up(stack, "ana", location_consent=False)
    customers = f"{stack.api}/tenants/{stack.tenant}/customers"
    with stack.as_app() as app:
        recorded = ranged(stack, time.time() - 2 * ROTATION_PERIOD_S)  # half an hour ago
        replayed = app.post(f"{customers}/{juan}/store-beacon", headers=juan_token,
                            json={"event": "enter", **recorded})
        assert replayed.status_code == 422, replayed.text
        assert replayed.json()["detail"]["reason"] == "beacon_not_current"

        refused = app.post(f"{customers}/{ana}/store-beacon", headers=ana_token,
                           json={"event": "enter", **ranged(stack, time.time())})
        assert refused.status_code == 403, refused.text

        entered = app.post(f"{customers}/{juan}/store-beacon", headers=juan_token,
                           json={"event": "enter", **ranged(stack, time.time()), "rssi": -70})
        assert entered.status_code == 200, entered.text
        assert entered.json()["visit"] == "opened"

    received = stack.fcm.wait_for(1, timeout_s=30.0)
    time.sleep(1.0)  # a wrong second push (to Ana, or for the replayed id) would be here now
    assert [message.token for message in stack.fcm.received.snapshot()] == [juan_push]
    assert received[0].message["notification"]["body"] == "Welcome, juan! Good to see you."
    log = (stack.logs / "cloud.log").read_text()
    assert "store-beacon report for customer" in log
    assert "refused: the id is no store's current one" in log
