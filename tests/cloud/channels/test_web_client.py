"""The web push client under web/: its own tests, and the payload contract with the sender."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cloud.channels.vapid import generate_vapid_keys
from cloud.channels.web_push_service import WebPushMessage, WebPushSender, WebPushSubscription
from sandbox.webpush import WebPushSandbox
from tests.cloud.factories import LOCAL_SERVERS

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "web"


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail(
            "Node.js is needed for the web client's tests (it is part of the machine image)"
        )
    return found


def test_web_client_unit_tests_pass() -> None:
    run = subprocess.run(
        [node(), "--test", "test/"],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    assert "# fail 0" in run.stdout


def test_service_worker_shows_what_the_sender_sent() -> None:
    vapid = generate_vapid_keys()
    with (
        WebPushSandbox() as service,
        WebPushSender(vapid, subject="mailto:ops@shop.example", policy=LOCAL_SERVERS) as sender,
    ):
        browser = service.subscribe(vapid.application_server_key)
        message = WebPushMessage(
            subscription=WebPushSubscription.from_json(browser.to_json(),
                                                      policy=LOCAL_SERVERS),
            title="50% off the dryer",
            body="Today only",
            idempotency_key="juan-dryer-50",
            url="https://shop.example/dryers",
            image_url="https://shop.example/dryer.png",
            open_url="https://api.shop.example/v1/opens/abc",
        )
        assert sender.deliver([message])[0].ok
        payload = service.wait_for(1)[0].payload.decode()

    script = (
        "const n = require('./notification.js');"
        "const doc = n.parsePayload(require('fs').readFileSync(0, 'utf8'));"
        "process.stdout.write(JSON.stringify(n.notificationFor(doc)));"
    )
    run = subprocess.run(
        [node(), "-e", script],
        cwd=WEB,
        input=payload,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    title, options = json.loads(run.stdout)

    assert title == "50% off the dryer"
    assert options["body"] == "Today only"
    assert options["image"] == "https://shop.example/dryer.png"
    assert options["data"]["url"] == "https://shop.example/dryers"
    assert options["data"]["openUrl"] == "https://api.shop.example/v1/opens/abc"
    assert options["tag"] == json.loads(payload)["tag"]
