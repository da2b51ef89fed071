"""The local SMTP relay refuses what a careful relay refuses."""

from __future__ import annotations

import json
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sandbox.smtp import SmtpSandbox

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def relay() -> Iterator[SmtpSandbox]:
    with SmtpSandbox(username="shop", password="pw") as smtp:
        yield smtp


def test_mail_without_starttls_is_refused(relay: SmtpSandbox) -> None:
    with smtplib.SMTP(relay.host, relay.port, timeout=5) as client:
        client.ehlo()
        code, _ = client.mail("news@shop.example")

    assert code == 530


def test_auth_without_tls_is_not_offered(relay: SmtpSandbox) -> None:
    with smtplib.SMTP(relay.host, relay.port, timeout=5) as client:
        client.ehlo()
        assert not client.has_extn("auth")


def test_relaying_without_auth_is_refused(relay: SmtpSandbox) -> None:
    with smtplib.SMTP(relay.host, relay.port, timeout=5) as client:
        client.starttls(context=ssl.create_default_context(cafile=str(relay.ca_file)))
        client.ehlo()
        code, _ = client.mail("news@shop.example")

    assert code == 530
    assert relay.received.snapshot() == []


def test_certificate_names_localhost_too(relay: SmtpSandbox) -> None:
    with smtplib.SMTP("localhost", relay.port, timeout=5) as client:
        client.starttls(context=ssl.create_default_context(cafile=str(relay.ca_file)))
        client.ehlo()
        client.login("shop", "pw")
        client.sendmail("news@shop.example", ["a@example.net"], b"Subject: hi\r\n\r\nbody\r\n")

    assert relay.wait_for(1)[0].message["Subject"] == "hi"


def test_runs_as_a_process_with_a_listing(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.smtp",
            "--user",
            "u",
            "--password",
            "p",
            "--workdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        with smtplib.SMTP(info["host"], info["port"], timeout=5) as client:
            client.starttls(context=ssl.create_default_context(cafile=info["ca_file"]))
            client.login("u", "p")
            client.sendmail("n@shop.example", ["a@example.net"], b"Subject: hello\r\n\r\ntext\r\n")
        listing = requests.get(f"{info['listing']}/_sandbox/emails", timeout=5).json()
        assert listing["emails"][0]["subject"] == "hello"
        assert listing["emails"][0]["to"] == ["a@example.net"]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
