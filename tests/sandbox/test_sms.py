"""The local SMS provider answers like Twilio's Messages API."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sandbox.sms import SmsSandbox

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sms() -> Iterator[SmsSandbox]:
    with SmsSandbox() as provider:
        yield provider


def post(
    sms: SmsSandbox, form: dict[str, str], auth: tuple[str, str] | None = None
) -> requests.Response:
    return requests.post(
        f"{sms.url}/2010-04-01/Accounts/{sms.account_sid}/Messages.json",
        data=form,
        auth=auth or (sms.account_sid, sms.auth_token),
        timeout=5,
    )


def test_accepted_text_is_queued(sms: SmsSandbox) -> None:
    response = post(sms, {"To": "+34600111222", "From": sms.from_number, "Body": "hi"})

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued"
    assert body["sid"].startswith("SM")
    assert sms.wait_for(1)[0].sid == body["sid"]
    listed = requests.get(f"{sms.url}/_sandbox/messages", timeout=5).json()
    assert listed["messages"][0]["sid"] == body["sid"]


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"To": "0034600", "Body": "hi"}, 21211),
        ({"To": "+34600111222", "From": "+10000000000", "Body": "hi"}, 21212),
        ({"To": "+34600111222", "Body": ""}, 21602),
        ({"To": "+34600111222", "Body": "x" * 1601}, 21617),
    ],
)
def test_refusals_use_twilio_error_codes(sms: SmsSandbox, form: dict[str, str], code: int) -> None:
    response = post(sms, {"From": sms.from_number, **form})

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert sms.received.snapshot() == []


def test_bad_credentials_get_401(sms: SmsSandbox) -> None:
    response = post(
        sms, {"To": "+34600111222", "From": sms.from_number, "Body": "hi"}, auth=("AC0", "x")
    )

    assert response.status_code == 401
    assert response.json()["code"] == 20003


def test_unreachable_status_callback_is_recorded_not_fatal(sms: SmsSandbox) -> None:
    response = post(
        sms,
        {
            "To": "+34600111222",
            "From": sms.from_number,
            "Body": "hi",
            "StatusCallback": "http://127.0.0.1:9/x",
        },
    )

    assert response.status_code == 201
    attempts = sms.callbacks.wait_for(2, what="callbacks")
    assert [a.http_status for a in attempts] == [None, None]


def test_runs_as_a_process() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.sms", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert info["account_sid"].startswith("AC")
        assert requests.get(f"{info['url']}/_sandbox/health", timeout=5).json() == {"ok": True}
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
