"""FcmSender against the local FCM server: real HTTP, real OAuth, real firebase-admin."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from firebase_admin import messaging

from cloud.channels import fcm_sdk
from cloud.channels.dedupe import collapse_id
from cloud.channels.fcm import (
    ANDROID_PRIORITY,
    FCM_ORIGIN,
    MAX_BATCH,
    FcmSender,
    FcmSettings,
    PushMessage,
    build_message,
)
from cloud.channels.fcm_transport import IAM_CREDENTIALS_ORIGINS, EndpointAdapter
from cloud.channels.inflight import sending_until
from cloud.channels.results import NOT_SENT
from cloud.channels.retry import RetryPolicy
from sandbox.fcm import FcmSandbox, Outcome, ServiceAccount, make_token
from tests.cloud.channels.conftest import PROJECT

#: Short waits keep the suite fast; the jitter still varies them.
FAST_RETRY = RetryPolicy(
    attempts=3, initial_backoff_s=0.05, max_backoff_s=0.2, jitter_s=0.05, max_inline_wait_s=5
)


def push(token: str, key: str = "k1", **overrides: object) -> PushMessage:
    fields: dict[str, object] = {
        "token": token,
        "title": "20% off dryers",
        "body": "Only today, in the store you are passing",
        "idempotency_key": key,
        "image_url": "https://shop.example/img/dryer.png",
        "deep_link": "vitrina://offers/dryer-20",
        "data": {"offer_id": "dryer-20"},
        "ttl_s": 1800,
    }
    fields.update(overrides)
    return PushMessage(**fields)  # type: ignore[arg-type]


@pytest.fixture
def sender(fcm_server: FcmSandbox, fcm_credentials: Path) -> Iterator[FcmSender]:
    settings = FcmSettings(
        project_id=PROJECT, credentials_file=str(fcm_credentials), endpoint=fcm_server.url
    )
    with FcmSender(settings, retry=FAST_RETRY) as sender:
        yield sender


def attempts_for(server: FcmSandbox, token: str) -> list[float]:
    return [a.at_monotonic for a in server.attempts.snapshot() if a.target == f"token:{token}"]


def test_success_delivers_the_message_as_built(sender: FcmSender, fcm_server: FcmSandbox) -> None:
    token = make_token("juan")
    before = int(time.time())

    [result] = sender.send([push(token)])

    assert result.ok
    [received] = fcm_server.received.snapshot()
    assert result.provider_message_id == received.name
    message = received.message
    assert message["token"] == token
    assert message["notification"] == {
        "title": "20% off dryers",
        "body": "Only today, in the store you are passing",
        "image": "https://shop.example/img/dryer.png",
    }
    assert message["data"] == {
        "offer_id": "dryer-20",
        "deep_link": "vitrina://offers/dryer-20",
        "dedupe_key": collapse_id("k1"),
    }
    assert message["android"]["priority"] == ANDROID_PRIORITY
    assert message["android"]["ttl"] == "1800s"
    assert message["android"]["notification"]["tag"] == collapse_id("k1")
    headers = message["apns"]["headers"]
    assert headers["apns-priority"] == "10"
    assert before + 1800 <= int(headers["apns-expiration"]) <= int(time.time()) + 1800
    assert headers["apns-collapse-id"] == collapse_id("k1")
    assert message["apns"]["payload"]["aps"]["mutable-content"] == 1


def test_oauth_token_is_fetched_once_and_checked_by_the_server(
    sender: FcmSender, fcm_server: FcmSandbox, service_account: ServiceAccount
) -> None:
    results = sender.send([push(make_token(), key=f"k{i}") for i in range(20)])

    assert all(r.ok for r in results)
    [grant] = fcm_server.token_requests.snapshot()
    assert grant.error is None
    assert grant.client_email == service_account.client_email
    assert grant.scope is not None
    assert "https://www.googleapis.com/auth/cloud-platform" in grant.scope.split()


def test_the_access_boundary_lookup_goes_to_the_local_server_too(
    sender: FcmSender, fcm_server: FcmSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """google-auth looks up the account's regional access boundary after each token, in a
    background thread; with a local endpoint nothing may go to Google's IAM API instead.
    Newer google-auth releases make the lookup opt-in (an environment variable); it is
    switched on here so the path is exercised whichever release is installed."""
    monkeypatch.setenv(
        "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED", "true"
    )
    assert sender.send([push(make_token())])[0].ok
    deadline = time.monotonic() + 5.0
    while fcm_server.boundary_lookups == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fcm_server.boundary_lookups == 1


def test_credentials_with_a_foreign_key_are_refused(fcm_server: FcmSandbox, tmp_path: Path) -> None:
    impostor = ServiceAccount.generate(PROJECT)
    forged = ServiceAccount(
        project_id=PROJECT,
        client_email=fcm_server.account.client_email,
        client_id=impostor.client_id,
        private_key_id=fcm_server.account.private_key_id,
        private_key_pem=impostor.private_key_pem,
    )
    path = tmp_path / "forged.json"
    path.write_text(__import__("json").dumps(forged.info(fcm_server.token_uri)))
    settings = FcmSettings(project_id=PROJECT, credentials_file=str(path), endpoint=fcm_server.url)

    with FcmSender(settings, retry=FAST_RETRY) as sender:
        [result] = sender.send([push(make_token())])

    assert not result.ok
    assert result.error_code == "UNAUTHENTICATED"
    assert not result.permanent
    assert not result.transient
    assert fcm_server.received.snapshot() == []
    assert [r.error for r in fcm_server.token_requests.snapshot()] == ["Invalid JWT Signature."]


def test_expired_access_token_is_refreshed_on_401(
    sender: FcmSender, fcm_server: FcmSandbox
) -> None:
    assert sender.send([push(make_token())])[0].ok
    fcm_server.expire_access_tokens()

    [result] = sender.send([push(make_token(), key="k2")])

    assert result.ok
    assert len(fcm_server.token_requests.snapshot()) == 2
    assert len(fcm_server.received.snapshot()) == 2
    # Both exchanges are on the result (the refused one first), each with its latency.
    assert [(t.ok, t.error_code) for t in result.history()] == [
        (False, "UNAUTHENTICATED"), (True, None)
    ]
    assert all(t.latency_ms is not None for t in result.history())


def test_nothing_starts_after_the_sends_deadline(
    sender: FcmSender, fcm_server: FcmSandbox
) -> None:
    token = make_token()
    with sending_until(time.monotonic()):
        [result] = sender.send([push(token)])

    assert (result.error_code, result.transient, result.latency_ms) == (NOT_SENT, True, 0)
    assert attempts_for(fcm_server, token) == []


@pytest.mark.parametrize(
    ("outcome", "code"),
    [(Outcome.UNREGISTERED, "UNREGISTERED"), (Outcome.SENDER_ID_MISMATCH, "SENDER_ID_MISMATCH")],
)
def test_dead_tokens_are_permanent_and_not_retried(
    sender: FcmSender, fcm_server: FcmSandbox, outcome: Outcome, code: str
) -> None:
    token = make_token()
    fcm_server.script(token, then=outcome)

    [result] = sender.send([push(token)])

    assert not result.ok
    assert result.error_code == code
    assert result.permanent
    assert result.address_dead
    assert not result.transient
    assert len(attempts_for(fcm_server, token)) == 1


def test_quota_exceeded_waits_for_retry_after_then_succeeds(
    sender: FcmSender, fcm_server: FcmSandbox
) -> None:
    token = make_token()
    fcm_server.retry_after_s = 1
    fcm_server.script(token, Outcome.QUOTA_EXCEEDED)

    [result] = sender.send([push(token)])

    assert result.ok
    first, second = attempts_for(fcm_server, token)
    # FAST_RETRY's own backoff is at most 0.1 s: only Retry-After explains a 1 s gap.
    assert second - first >= 1.0
    # Both tries are on the result, for the message's record.
    assert [(t.error_code, t.retry_after_s) for t in result.history()] == [
        ("QUOTA_EXCEEDED", 1), (None, None)
    ]


def test_unavailable_then_success(sender: FcmSender, fcm_server: FcmSandbox) -> None:
    token = make_token()
    fcm_server.retry_after_s = None
    fcm_server.script(token, Outcome.UNAVAILABLE)

    [result] = sender.send([push(token)])

    assert result.ok
    assert len(attempts_for(fcm_server, token)) == 2
    assert len(fcm_server.received.snapshot()) == 1


def test_unavailable_for_good_gives_up_after_the_policy_attempts(
    sender: FcmSender, fcm_server: FcmSandbox
) -> None:
    token = make_token()
    fcm_server.retry_after_s = None
    fcm_server.script(token, then=Outcome.UNAVAILABLE)

    [result] = sender.send([push(token)])

    assert not result.ok
    assert result.error_code == "UNAVAILABLE"
    assert result.transient
    assert not result.permanent
    assert len(attempts_for(fcm_server, token)) == FAST_RETRY.attempts


def test_a_long_retry_after_goes_back_to_the_caller(
    sender: FcmSender, fcm_server: FcmSandbox
) -> None:
    token = make_token()
    fcm_server.retry_after_s = 120
    fcm_server.script(token, Outcome.QUOTA_EXCEEDED)
    started = time.monotonic()

    [result] = sender.send([push(token)])

    assert time.monotonic() - started < 2
    assert result.transient
    assert result.error_code == "QUOTA_EXCEEDED"
    assert result.retry_after_s == 120
    assert len(attempts_for(fcm_server, token)) == 1


def test_mixed_batch_keeps_order_and_retries_only_transient(
    sender: FcmSender, fcm_server: FcmSandbox
) -> None:
    tokens = [make_token(str(i)) for i in range(5)]
    fcm_server.retry_after_s = None
    fcm_server.script(tokens[1], then=Outcome.UNREGISTERED)
    fcm_server.script(tokens[3], Outcome.INTERNAL)

    results = sender.send([push(t, key=f"k{i}") for i, t in enumerate(tokens)])

    assert [r.token for r in results] == tokens
    assert [r.ok for r in results] == [True, False, True, True, True]
    assert [len(attempts_for(fcm_server, t)) for t in tokens] == [1, 1, 1, 2, 1]


def test_message_fcm_refuses_is_permanent_but_token_stays(
    sender: FcmSender, fcm_server: FcmSandbox
) -> None:
    [result] = sender.send([push(make_token(), data={"from": "shop"})])

    assert result.error_code == "INVALID_ARGUMENT"
    assert result.permanent
    assert not result.address_dead
    assert fcm_server.received.snapshot() == []


def test_content_refused_before_sending_gets_a_result_too(
    sender: FcmSender, fcm_server: FcmSandbox
) -> None:
    good, bad = make_token(), make_token()
    results = sender.send(
        [push(good), push(bad, key="k2", data={"deep_link": "x"}), push(good, key="k3", ttl_s=-1)]
    )

    assert [r.ok for r in results] == [True, False, False]
    assert {r.error_code for r in results[1:]} == {"INVALID_ARGUMENT"}
    assert len(fcm_server.received.snapshot()) == 1


def test_1200_messages_go_out_in_three_send_each_async_calls(
    sender: FcmSender, fcm_server: FcmSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch_sizes: list[int] = []
    real_send_each = messaging.send_each_async

    async def counting_send_each(
        messages: list[messaging.Message], **kwargs: object
    ) -> messaging.BatchResponse:
        batch_sizes.append(len(messages))
        return await real_send_each(messages, **kwargs)

    monkeypatch.setattr(messaging, "send_each_async", counting_send_each)
    tokens = [make_token() for _ in range(1200)]

    results = sender.send([push(t, key=f"k{i}") for i, t in enumerate(tokens)])

    assert batch_sizes == [MAX_BATCH, MAX_BATCH, 200]
    assert all(r.ok for r in results)
    received = fcm_server.received.snapshot()
    assert len(received) == 1200
    assert {m.token for m in received} == set(tokens)
    assert len({r.provider_message_id for r in results}) == 1200
    assert len(fcm_server.token_requests.snapshot()) == 1


def test_unreachable_server_is_transient(fcm_credentials: Path, fcm_server: FcmSandbox) -> None:
    url = fcm_server.url
    fcm_server.stop()
    settings = FcmSettings(project_id=PROJECT, credentials_file=str(fcm_credentials), endpoint=url)

    with FcmSender(
        settings, retry=RetryPolicy(attempts=2, initial_backoff_s=0.01, jitter_s=0.01)
    ) as sender:
        [result] = sender.send([push(make_token())])

    assert not result.ok
    assert result.transient
    assert result.error_code == "UNAVAILABLE"


def test_without_endpoint_requests_stay_on_googles_origin(fcm_credentials: Path) -> None:
    settings = FcmSettings(project_id=PROJECT, credentials_file=str(fcm_credentials))
    send_url = f"{FCM_ORIGIN}/v1/projects/{PROJECT}/messages:send"

    with FcmSender(settings) as sender:
        assert sender._http.route(send_url) == send_url
        for origin in IAM_CREDENTIALS_ORIGINS:
            adapter = sender._token_session.get_adapter(f"{origin}/v1/projects/-/x")
            assert not isinstance(adapter, EndpointAdapter)


def test_senders_for_two_projects_coexist(fcm_server: FcmSandbox, fcm_credentials: Path) -> None:
    settings = FcmSettings(
        project_id=PROJECT, credentials_file=str(fcm_credentials), endpoint=fcm_server.url
    )
    other = FcmSettings(
        project_id="another-shop", credentials_file=str(fcm_credentials), endpoint=fcm_server.url
    )

    with FcmSender(settings) as first, FcmSender(other, retry=FAST_RETRY) as second:
        assert first.send([push(make_token())])[0].ok
        [refused] = second.send([push(make_token())])

    # The server serves one project: the other one's sends are refused as at Google.
    assert refused.error_code == "PERMISSION_DENIED"


@pytest.mark.filterwarnings("ignore:Message.token is deprecated:DeprecationWarning")
def test_build_message_sets_no_image_options_without_an_image() -> None:
    message = build_message(push(make_token(), image_url=None, deep_link=None), now=1_000_000)

    encoded = fcm_sdk.encode_message(message)

    assert "image" not in encoded["notification"]
    assert "fcm_options" not in encoded["apns"]
    assert "deep_link" not in encoded["data"]
    assert encoded["apns"]["headers"]["apns-expiration"] == str(1_000_000 + 1800)


def test_sandbox_rejects_what_is_not_an_fcm_request(fcm_server: FcmSandbox) -> None:
    # The redirect must not make the server lenient: a bare POST without OAuth fails.
    response = requests.post(
        f"{fcm_server.url}/v1/projects/{PROJECT}/messages:send", json={}, timeout=5
    )
    assert response.status_code == 401


def test_a_token_refused_mid_batch_is_refreshed_once_for_the_whole_batch(
    sender: FcmSender, fcm_server: FcmSandbox
) -> None:
    assert sender.send([push(make_token())])[0].ok
    fcm_server.expire_access_tokens()

    results = sender.send([push(make_token(), key=f"k{i}") for i in range(60)])

    assert all(r.ok for r in results)
    # Sixty requests saw the 401 at about the same time; one of them refreshed.
    assert len(fcm_server.token_requests.snapshot()) == 2
    assert len(fcm_server.received.snapshot()) == 61


def test_worker_threads_share_one_sender(sender: FcmSender, fcm_server: FcmSandbox) -> None:
    def batch(worker: int) -> list[bool]:
        messages = [push(make_token(), key=f"w{worker}-{i}") for i in range(25)]
        return [r.ok for r in sender.send(messages)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(batch, range(4)))

    assert all(all(ok) for ok in outcomes)
    assert len(fcm_server.received.snapshot()) == 100
    assert len(fcm_server.token_requests.snapshot()) == 1


def test_close_stops_the_senders_loop_thread(fcm_server: FcmSandbox, fcm_credentials: Path) -> None:
    settings = FcmSettings(
        project_id=PROJECT, credentials_file=str(fcm_credentials), endpoint=fcm_server.url
    )
    before = set(threading.enumerate())
    sender = FcmSender(settings, retry=FAST_RETRY)
    assert sender.send([push(make_token())])[0].ok
    started = [t for t in threading.enumerate() if t not in before and t.name.startswith("fcm-")]

    sender.close()
    sender.close()  # closing twice is harmless

    assert started
    assert not any(t.is_alive() for t in started)
    with pytest.raises(RuntimeError, match="closed"):
        sender.send([push(make_token())])


def test_a_sender_can_be_closed_from_async_code(
    fcm_server: FcmSandbox, fcm_credentials: Path
) -> None:
    settings = FcmSettings(
        project_id=PROJECT, credentials_file=str(fcm_credentials), endpoint=fcm_server.url
    )
    sender = FcmSender(settings, retry=FAST_RETRY)

    async def in_a_request_handler() -> bool:
        ok = sender.send([push(make_token())])[0].ok
        sender.close()
        return ok

    assert asyncio.run(in_a_request_handler())
