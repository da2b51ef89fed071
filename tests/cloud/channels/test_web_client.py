"""The web push service worker under web/worker/ and the sender agree on the payload.

The web client's own Node tests run with the API in tests/cloud/api/test_web_app_client.py.
"""

from __future__ import annotations

import json
import subprocess

from cloud.channels.vapid import generate_vapid_keys
from cloud.channels.web_push_service import WebPushMessage, WebPushSender, WebPushSubscription
from sandbox.webpush import WebPushSandbox
from tests.cloud.factories import LOCAL_SERVERS
from tests.support.node import WEB, node


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
        "const n = require('./worker/notification.js');"
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
