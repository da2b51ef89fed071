"""The local push service enforces VAPID and RFC 8291 as browsers' push services do."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import http_ece
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid

from sandbox.webpush import (
    BrowserSubscription,
    PushRefusedError,
    WebPushSandbox,
    _b64url_decode,
    verify_vapid,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def service() -> Iterator[WebPushSandbox]:
    with WebPushSandbox() as push_service:
        yield push_service


@pytest.fixture(scope="module")
def vapid() -> Vapid:
    key = Vapid()
    key.generate_keys()
    return key


def authorization(vapid: Vapid, service: WebPushSandbox, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": "mailto:ops@shop.example", "aud": service.url}
    payload.update(claims)
    return str(vapid.sign(payload)["Authorization"])


def encrypt(subscription: BrowserSubscription, plaintext: bytes) -> bytes:
    body: bytes = http_ece.encrypt(
        plaintext,
        private_key=ec.generate_private_key(ec.SECP256R1()),
        dh=_b64url_decode(subscription.p256dh),
        auth_secret=_b64url_decode(subscription.auth),
        version="aes128gcm",
    )
    return body


def post(
    subscription: BrowserSubscription, auth: str, body: bytes = b"", **headers: str
) -> requests.Response:
    sent = {"Authorization": auth, "TTL": "60", "Content-Encoding": "aes128gcm"}
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    return requests.post(subscription.endpoint, data=body, headers=sent, timeout=5)


def test_a_correct_push_is_decrypted(service: WebPushSandbox, vapid: Vapid) -> None:
    browser = service.subscribe()

    response = post(
        browser, authorization(vapid, service), encrypt(browser, b'{"hi":1}'), Urgency="low"
    )

    assert response.status_code == 201
    [delivery] = service.wait_for(1)
    assert response.headers["Location"].endswith(delivery.message_id)
    assert delivery.json() == {"hi": 1}
    assert delivery.urgency == "low"
    assert delivery.ttl_s == 60


def test_push_without_payload_is_accepted(service: WebPushSandbox, vapid: Vapid) -> None:
    browser = service.subscribe()

    assert post(browser, authorization(vapid, service)).status_code == 201
    assert service.received.snapshot()[0].payload == b""


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "https://elsewhere.example"}, "aud must be"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"exp": int(time.time()) + 3 * 24 * 3600}, "24 hours"),
    ],
)
def test_bad_vapid_claims_get_401(
    service: WebPushSandbox, vapid: Vapid, claims: dict[str, Any], reason: str
) -> None:
    browser = service.subscribe()

    response = post(browser, authorization(vapid, service, **claims), encrypt(browser, b"x"))

    assert response.status_code == 401
    assert reason in response.json()["error"]
    assert service.received.snapshot() == []


def test_signature_by_another_key_gets_401(service: WebPushSandbox, vapid: Vapid) -> None:
    browser = service.subscribe()
    other = Vapid()
    other.generate_keys()
    token = authorization(vapid, service).split("t=")[1].split(",")[0]
    forged = f"vapid t={token},k={authorization(other, service).split('k=')[1]}"

    response = post(browser, forged, encrypt(browser, b"x"))

    assert response.status_code == 401
    assert "does not verify" in response.json()["error"]


@pytest.mark.parametrize(
    "header", ["", "Bearer abc", "vapid t=abc", "vapid t=a.b.c,k=AAAA", "WebPush a.b.c"]
)
def test_malformed_authorization_gets_401(service: WebPushSandbox, header: str) -> None:
    browser = service.subscribe()

    assert post(browser, header).status_code == 401


def test_sub_must_be_a_contact_url(service: WebPushSandbox, vapid: Vapid) -> None:
    claims = {"sub": "ops", "aud": service.url, "exp": int(time.time()) + 60}
    # py_vapid refuses such a sub unless told not to be strict.
    vapid.conf["no-strict"] = True
    try:
        header = str(vapid.sign(claims)["Authorization"])
    finally:
        vapid.conf["no-strict"] = False

    with pytest.raises(PushRefusedError, match="sub must be"):
        verify_vapid(header, audience=service.url)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"TTL": ""}, 400),
        ({"Urgency": "asap"}, 400),
        ({"Topic": "x" * 33}, 400),
        ({"Topic": "a b"}, 400),
        ({"Content-Encoding": "aesgcm"}, 415),
    ],
)
def test_protocol_headers_are_checked(
    service: WebPushSandbox, vapid: Vapid, headers: dict[str, str], status: int
) -> None:
    browser = service.subscribe()

    response = post(browser, authorization(vapid, service), encrypt(browser, b"x"), **headers)

    assert response.status_code == status


def test_payload_over_4096_bytes_gets_413(service: WebPushSandbox, vapid: Vapid) -> None:
    browser = service.subscribe()

    response = post(browser, authorization(vapid, service), encrypt(browser, b"z" * 4000))

    assert response.status_code == 413


def test_payload_for_another_subscription_does_not_decrypt(
    service: WebPushSandbox, vapid: Vapid
) -> None:
    browser, stranger = service.subscribe(), service.subscribe()

    response = post(browser, authorization(vapid, service), encrypt(stranger, b"secret"))

    assert response.status_code == 400
    assert "does not decrypt" in response.json()["error"]


def test_garbage_body_does_not_decrypt(service: WebPushSandbox, vapid: Vapid) -> None:
    browser = service.subscribe()

    response = post(browser, authorization(vapid, service), os.urandom(200))

    assert response.status_code == 400


def test_unknown_subscription_is_404(service: WebPushSandbox, vapid: Vapid) -> None:
    response = requests.post(
        f"{service.url}/push/nobody",
        headers={"Authorization": authorization(vapid, service), "TTL": "0"},
        timeout=5,
    )

    assert response.status_code == 404


def test_subscriptions_and_deliveries_over_http(service: WebPushSandbox, vapid: Vapid) -> None:
    created = requests.post(
        f"{service.url}/_sandbox/subscriptions",
        json={"application_server_key": application_server_key(vapid)},
        timeout=5,
    )
    assert created.status_code == 201
    info = created.json()
    assert info["endpoint"] == f"{service.url}/push/{info['id']}"
    assert set(info["keys"]) == {"p256dh", "auth"}
    browser = BrowserSubscription(
        id=info["id"],
        endpoint=info["endpoint"],
        p256dh=info["keys"]["p256dh"],
        auth=info["keys"]["auth"],
        private_key=ec.generate_private_key(ec.SECP256R1()),
    )
    assert post(browser, authorization(vapid, service)).status_code == 201
    listing = requests.get(f"{service.url}/_sandbox/deliveries", timeout=5).json()
    assert listing["next"] == 1
    assert listing["deliveries"][0]["subscription_id"] == info["id"]


def application_server_key(vapid: Vapid) -> str:
    """The applicationServerKey a page would pass for this VAPID key."""
    point = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode()


def test_runs_as_a_process() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.webpush", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = json.loads(process.stdout.readline())["url"]
        assert requests.get(f"{url}/_sandbox/health", timeout=5).json() == {"ok": True}
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
