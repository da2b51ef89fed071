"""The local FCM server speaks and checks the protocol as Google does."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.auth import crypt, jwt

from sandbox.fcm import (
    GOOGLE_TOKEN_AUDIENCE,
    JWT_BEARER_GRANT,
    FcmSandbox,
    Outcome,
    ServiceAccount,
    make_token,
)

PROJECT = "sandbox-test"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def account() -> ServiceAccount:
    return ServiceAccount.generate(PROJECT)


@pytest.fixture
def fcm(account: ServiceAccount) -> Iterator[FcmSandbox]:
    with FcmSandbox(PROJECT, service_account=account) as server:
        yield server


def assertion(account: ServiceAccount, **claims: Any) -> str:
    signer = crypt.RSASigner.from_service_account_info(  # type: ignore[no-untyped-call]
        {"private_key": account.private_key_pem, "private_key_id": account.private_key_id}
    )
    now = int(time.time())
    payload = {
        "iss": account.client_email,
        "aud": GOOGLE_TOKEN_AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
    }
    payload.update(claims)
    encoded: bytes = jwt.encode(signer, payload)  # type: ignore[no-untyped-call]
    return encoded.decode()


def grant(fcm: FcmSandbox, token: str, grant_type: str = JWT_BEARER_GRANT) -> requests.Response:
    return requests.post(
        fcm.token_uri, data={"grant_type": grant_type, "assertion": token}, timeout=5
    )


def access_token(fcm: FcmSandbox, account: ServiceAccount) -> str:
    response = grant(fcm, assertion(account))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def send(fcm: FcmSandbox, bearer: str, body: Any, project: str = PROJECT) -> requests.Response:
    return requests.post(
        f"{fcm.url}/v1/projects/{project}/messages:send",
        json=body,
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=5,
    )


def test_token_endpoint_issues_a_bearer_token(fcm: FcmSandbox, account: ServiceAccount) -> None:
    response = grant(fcm, assertion(account))

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"].startswith("ya29.")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "https://evil.example/token"}, "audience"),
        ({"iss": "someone@else.iam.gserviceaccount.com"}, "account not found"),
        ({"iat": 1_000_000, "exp": 1_003_600}, "reasonable timeframe"),
        ({"exp": int(time.time()) + 7200}, "short-lived"),
        ({"scope": "https://www.googleapis.com/auth/userinfo.email"}, "scope"),
    ],
)
def test_token_endpoint_refuses_bad_claims(
    fcm: FcmSandbox, account: ServiceAccount, claims: dict[str, Any], reason: str
) -> None:
    response = grant(fcm, assertion(account, **claims))

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert reason in response.json()["error_description"]


def test_token_endpoint_refuses_a_foreign_signature(
    fcm: FcmSandbox, account: ServiceAccount
) -> None:
    other = ServiceAccount.generate(PROJECT)
    forged = ServiceAccount(
        PROJECT,
        account.client_email,
        other.client_id,
        account.private_key_id,
        other.private_key_pem,
    )

    response = grant(fcm, assertion(forged))

    assert response.status_code == 400
    assert response.json()["error_description"] == "Invalid JWT Signature."
    assert fcm.token_requests.snapshot()[-1].error == "Invalid JWT Signature."


@pytest.mark.parametrize("garbage", ["", "a.b", "a.b.c", "!!.??.**"])
def test_token_endpoint_survives_garbage(fcm: FcmSandbox, garbage: str) -> None:
    response = grant(fcm, garbage)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_token_endpoint_wants_the_jwt_bearer_grant(
    fcm: FcmSandbox, account: ServiceAccount
) -> None:
    response = grant(fcm, assertion(account), grant_type="client_credentials")

    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_send_requires_an_issued_token(fcm: FcmSandbox) -> None:
    response = send(fcm, "ya29.made-up", {"message": {"token": make_token()}})

    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"


def test_send_refuses_another_project(fcm: FcmSandbox, account: ServiceAccount) -> None:
    response = send(fcm, access_token(fcm, account), {"message": {"token": make_token()}}, "other")

    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


def test_accepted_message_is_recorded_and_listed(fcm: FcmSandbox, account: ServiceAccount) -> None:
    bearer = access_token(fcm, account)
    token = make_token()
    message = {
        "token": token,
        "notification": {"title": "Hi", "body": "There", "image": "https://x.example/a.png"},
        "data": {"k": "v"},
        "android": {"priority": "high", "ttl": "60s", "notification": {"tag": "t"}},
        "apns": {"headers": {"apns-priority": "10", "apns-expiration": "1700000000"}},
        "webpush": {"fcm_options": {"link": "https://shop.example/"}},
    }

    response = send(fcm, bearer, {"message": message})

    assert response.status_code == 200
    name = response.json()["name"]
    assert name.startswith(f"projects/{PROJECT}/messages/0:")
    [received] = fcm.wait_for(1)
    assert received.name == name
    assert received.token == token
    assert received.message == message
    listing = requests.get(f"{fcm.url}/_sandbox/messages", timeout=5).json()
    assert listing["next"] == 1
    assert listing["messages"][0]["message"] == message
    assert requests.get(f"{fcm.url}/_sandbox/messages?since=1", timeout=5).json()["messages"] == []


def test_validate_only_is_checked_but_not_delivered(
    fcm: FcmSandbox, account: ServiceAccount
) -> None:
    body = {"validate_only": True, "message": {"token": make_token()}}
    response = send(fcm, access_token(fcm, account), body)

    assert response.status_code == 200
    assert response.json()["name"].endswith("/fake_message_id")
    assert fcm.received.snapshot() == []


GOOD = make_token()


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({}, "message"),
        ({"token": GOOD, "topic": "news"}, "message"),
        ({"token": "not-a-token"}, "message.token"),
        ({"topic": "bad topic!"}, "message.topic"),
        ({"fid": "xx"}, "message.fid"),
        ({"token": GOOD, "data": {"n": 1}}, "message.data[n]"),
        ({"token": GOOD, "data": {"google.x": "1"}}, "message.data[google.x]"),
        ({"token": GOOD, "data": {"from": "1"}}, "message.data[from]"),
        ({"token": GOOD, "data": {"big": "x" * 5000}}, "message"),
        ({"token": GOOD, "colour": "red"}, "message"),
        ({"token": GOOD, "notification": {"title": 3}}, "message.notification.title"),
        ({"token": GOOD, "notification": {"image": "ftp://x"}}, "message.notification.image"),
        ({"token": GOOD, "android": {"priority": "urgent"}}, "message.android.priority"),
        ({"token": GOOD, "android": {"ttl": "3600"}}, "message.android.ttl"),
        ({"token": GOOD, "android": {"ttl": "9999999s"}}, "message.android.ttl"),
        (
            {"token": GOOD, "apns": {"headers": {"apns-priority": "7"}}},
            "message.apns.headers[apns-priority]",
        ),
        (
            {"token": GOOD, "apns": {"headers": {"apns-expiration": "soon"}}},
            "message.apns.headers[apns-expiration]",
        ),
        ({"token": GOOD, "apns": {"payload": {"aps": "x"}}}, "message.apns.payload.aps"),
        (
            {"token": GOOD, "webpush": {"fcm_options": {"link": "http://x"}}},
            "message.webpush.fcm_options.link",
        ),
    ],
)
def test_invalid_messages_are_refused_like_fcm(
    fcm: FcmSandbox, account: ServiceAccount, message: dict[str, Any], field: str
) -> None:
    response = send(fcm, access_token(fcm, account), {"message": message})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    details = {d["@type"].rsplit(".", 1)[-1]: d for d in error["details"]}
    assert details["FcmError"]["errorCode"] == "INVALID_ARGUMENT"
    assert details["BadRequest"]["fieldViolations"][0]["field"] == field
    assert fcm.received.snapshot() == []


def test_body_that_is_not_json_is_a_clear_400(fcm: FcmSandbox, account: ServiceAccount) -> None:
    response = requests.post(
        f"{fcm.url}/v1/projects/{PROJECT}/messages:send",
        data=b"{not json",
        headers={"Authorization": f"Bearer {access_token(fcm, account)}"},
        timeout=5,
    )

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


@pytest.mark.parametrize(
    ("outcome", "status", "google_status"),
    [
        (Outcome.UNREGISTERED, 404, "NOT_FOUND"),
        (Outcome.SENDER_ID_MISMATCH, 403, "PERMISSION_DENIED"),
        (Outcome.QUOTA_EXCEEDED, 429, "RESOURCE_EXHAUSTED"),
        (Outcome.UNAVAILABLE, 503, "UNAVAILABLE"),
        (Outcome.INVALID_ARGUMENT, 400, "INVALID_ARGUMENT"),
        (Outcome.INTERNAL, 500, "INTERNAL"),
    ],
)
def test_scripted_outcomes_answer_in_fcm_error_format(
    fcm: FcmSandbox, account: ServiceAccount, outcome: Outcome, status: int, google_status: str
) -> None:
    token = make_token()
    fcm.retry_after_s = 7
    fcm.script(token, outcome)
    bearer = access_token(fcm, account)

    failed = send(fcm, bearer, {"message": {"token": token}})
    then = send(fcm, bearer, {"message": {"token": token}})

    assert failed.status_code == status
    error = failed.json()["error"]
    assert error["status"] == google_status
    assert error["details"][0]["errorCode"] == outcome.value
    expects_retry_after = outcome in (Outcome.QUOTA_EXCEEDED, Outcome.UNAVAILABLE)
    assert failed.headers.get("Retry-After") == ("7" if expects_retry_after else None)
    assert then.status_code == 200


def test_scripts_can_be_set_over_http(fcm: FcmSandbox, account: ServiceAccount) -> None:
    token = make_token()
    scripted = requests.post(
        f"{fcm.url}/_sandbox/script",
        json={"token": token, "outcomes": ["UNAVAILABLE"], "then": "UNREGISTERED"},
        timeout=5,
    )
    bearer = access_token(fcm, account)

    statuses = [send(fcm, bearer, {"message": {"token": token}}).status_code for _ in range(3)]

    assert scripted.status_code == 204
    assert statuses == [503, 404, 404]
    bad = requests.post(
        f"{fcm.url}/_sandbox/script", json={"token": token, "then": "MAYBE"}, timeout=5
    )
    assert bad.status_code == 400


def test_wait_for_says_how_many_came(fcm: FcmSandbox) -> None:
    with pytest.raises(TimeoutError, match="expected 1 FCM messages, got 0"):
        fcm.wait_for(1, timeout_s=0.1)


def test_unknown_paths_and_methods(fcm: FcmSandbox) -> None:
    assert requests.get(f"{fcm.url}/nowhere", timeout=5).status_code == 404
    assert requests.get(fcm.token_uri, timeout=5).status_code == 405


def test_runs_as_a_process_and_writes_its_credentials(tmp_path: Path) -> None:
    credentials = tmp_path / "sa.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.fcm",
            "--port",
            "0",
            "--project",
            "proc-test",
            "--credentials-out",
            str(credentials),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        announced = json.loads(process.stdout.readline())
        info = json.loads(credentials.read_text())
        assert info["type"] == "service_account"
        assert info["project_id"] == "proc-test"
        assert info["token_uri"] == f"{announced['url']}/token"
        assert credentials.stat().st_mode & 0o777 == 0o600
        health = requests.get(f"{announced['url']}/_sandbox/health", timeout=5)
        assert health.json() == {"ok": True}
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
