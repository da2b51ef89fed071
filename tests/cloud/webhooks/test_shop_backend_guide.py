"""docs/shop-backend.md, run as a shop's developer would use it: the signing snippets of
every language sign requests a running API accepts (and a stale or tampered one it
refuses), the verifying snippets accept what the orchestrator's own outbound signer
produces (and refuse a wrong secret, a stale timestamp, a changed body), the customer
token snippets sign tokens the API's verifier accepts, and every JSON example parses as
what it documents.

One API server for the module; each language's snippets run in one process, all of them
at once.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.api.webhooks import WEBHOOK_ADAPTER
from cloud.auth.customer_tokens import generate_key_pair
from cloud.auth.models import Role, TokenAlgorithm
from cloud.commerce.models import WebhookReceipt
from cloud.db import make_engine
from cloud.webhooks.outbound import ScenarioStepWebhook, signed_headers
from cloud.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from provisioning.local_broker import free_port
from tests.cloud.factories import bearer, cloud_settings, issue_key
from tests.cloud.running import running_api
from tests.cloud.test_cli import invoke
from tests.docs.snippets import snippet

GUIDE = "docs/shop-backend.md"
TENANT = "acme"
SECRET = "whsec_guide_0123456789abcdef"
#: Past the 300 s window, whichever side looks at it.
STALE = timedelta(seconds=400)
#: In the order a shop sends them: an order, a refund of part of it, its cancellation.
EVENTS = ["backend-event-cart-updated", "backend-event-cart-abandoned",
          "backend-event-order-created", "backend-event-order-refunded",
          "backend-event-order-cancelled", "backend-event-newsletter-signup",
          "backend-event-newsletter-confirmed", "backend-event-app-opened",
          "backend-event-push-opened"]
LANGUAGES = ("node", "php", "java")


def text(snippet_id: str) -> str:
    return snippet(GUIDE, snippet_id).text


def event(snippet_id: str, **changes: Any) -> dict[str, Any]:
    return {**json.loads(text(snippet_id)), **changes}


@dataclass(frozen=True)
class Api:
    url: str
    database_url: str
    engine: Engine
    app_key: dict[str, str]
    admin_key: dict[str, str]

    def post_signed(self, body: bytes, timestamp: str, signature: str) -> requests.Response:
        return requests.post(f"{self.url}/webhooks/{TENANT}", data=body, timeout=10, headers={
            "Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature,
        })


@pytest.fixture(scope="module")
def api(schema_templates: dict[str, str], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Api]:
    """The API as production serves it, on a copy of the migrated SQLite database."""
    database = tmp_path_factory.mktemp("guide") / "vitrina.db"
    shutil.copyfile(schema_templates["sqlite"], database)
    database_url = f"sqlite:///{database}"
    engine = make_engine(database_url)
    app = create_app(cloud_settings(tenant=TENANT, database_url=database_url,
                                    webhook_secrets=[SECRET]), engine=engine)
    with running_api(app, free_port()) as url:
        yield Api(url=url, database_url=database_url, engine=engine,
                  app_key=bearer(issue_key(engine, tenant=TENANT, role=Role.APP)),
                  admin_key=bearer(issue_key(engine, tenant=TENANT)))
    engine.dispose()


def now_s() -> int:
    return int(datetime.now(UTC).timestamp())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- the other languages, each in one process ------------------------------------------------

NODE_DRIVER = """
const { sign, verify } = require("./webhooks.js");
const { customerToken } = require("./customer-token.js");
const bytes = (text) => Buffer.from(text, "base64");
for (const line of require("node:fs").readFileSync(0, "utf8").trim().split("\\n")) {
  const [op, ...a] = line.split("\\t");
  if (op === "sign") {
    const h = a[1] === "-" ? sign(a[0], bytes(a[2])) : sign(a[0], bytes(a[2]), Number(a[1]));
    console.log(`${h["X-Vitrina-Timestamp"]}\\t${h["X-Vitrina-Signature"]}`);
  } else if (op === "verify") {
    console.log(String(verify(a[0], bytes(a[3]), a[1], a[2])));
  } else {
    console.log(customerToken({ privateKeyPem: bytes(a[0]).toString(), kid: a[1],
                                tenant: a[2], subject: a[3], lifetimeS: Number(a[4]) }));
  }
}
"""

PHP_DRIVER = """
foreach (file('php://stdin', FILE_IGNORE_NEW_LINES) as $line) {
    $a = explode("\\t", $line);
    if ($a[0] === 'sign') {
        $headers = vitrina_sign($a[1], base64_decode($a[3]), $a[2] === '-' ? null : (int) $a[2]);
        $values = array_map(fn ($h) => explode(': ', $h, 2)[1], $headers);
        echo "{$values[1]}\\t{$values[2]}\\n";
    } else {
        echo vitrina_verify($a[1], base64_decode($a[4]), $a[2], $a[3]) ? "true\\n" : "false\\n";
    }
}
"""

JAVA_DRIVER = """
public class Driver {
    public static void main(String[] args) throws Exception {
        var in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in));
        var decoder = java.util.Base64.getDecoder();
        for (String line; (line = in.readLine()) != null; ) {
            String[] a = line.split("\\t", -1);
            if (a[0].equals("sign")) {
                byte[] body = decoder.decode(a[3]);
                Map<String, String> h = a[2].equals("-") ? VitrinaWebhooks.sign(a[1], body)
                        : VitrinaWebhooks.sign(a[1], body, Long.parseLong(a[2]));
                System.out.println(h.get("X-Vitrina-Timestamp") + "\\t"
                        + h.get("X-Vitrina-Signature"));
            } else {
                System.out.println(VitrinaWebhooks.verify(a[1], decoder.decode(a[4]), a[2], a[3]));
            }
        }
    }
}
"""


def _java_source() -> str:
    """The snippet with the driver as the file's first class (the one `java` runs)."""
    lines = text("backend-webhooks-java").splitlines()
    imports = [line for line in lines if line.startswith("import ")]
    rest = [line for line in lines if not line.startswith("import ")]
    return "\n".join([*imports, JAVA_DRIVER, *rest]) + "\n"


def _commands(folder: Path) -> dict[str, list[str]]:
    """Each language's snippets and driver written to `folder`; the command running them."""
    (folder / "webhooks.js").write_text(text("backend-webhooks-node"))
    (folder / "customer-token.js").write_text(text("backend-token-node"))
    (folder / "driver.js").write_text(NODE_DRIVER)
    (folder / "driver.php").write_text(text("backend-webhooks-php") + PHP_DRIVER)
    (folder / "Driver.java").write_text(_java_source())
    return {"node": ["node", "driver.js"], "php": ["php", "driver.php"],
            "java": ["java", "Driver.java"]}


def run_all(folder: Path, requests_of: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every language's requests through its snippets, the processes running at once;
    each answer line by line."""
    commands = _commands(folder)
    running = {
        language: subprocess.Popen(commands[language], cwd=folder, text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        for language in requests_of
    }
    answers = {}
    for language, process in running.items():
        out, err = process.communicate("\n".join(requests_of[language]) + "\n", timeout=120)
        assert process.returncode == 0, f"{language}: {err}"
        answers[language] = out.splitlines()
    return answers


@dataclass(frozen=True)
class Outbound:
    """A webhook as the orchestrator signs it, and the ways it can be wrong."""

    body: bytes
    timestamp: str
    signature: str
    stale_timestamp: str
    stale_signature: str


def outbound() -> Outbound:
    body = text("backend-outbound-scenario-step").encode()
    fresh = signed_headers(body, secrets=[SECRET], now=datetime.now(UTC))
    stale = signed_headers(body, secrets=[SECRET], now=datetime.now(UTC) - STALE)
    return Outbound(body=body, timestamp=fresh[TIMESTAMP_HEADER],
                    signature=fresh[SIGNATURE_HEADER],
                    stale_timestamp=stale[TIMESTAMP_HEADER],
                    stale_signature=stale[SIGNATURE_HEADER])


def verify_requests(sent: Outbound) -> list[str]:
    """Authentic; with a rotation's extra signature; wrong secret; stale; changed body."""
    body = b64(sent.body)
    return [
        f"verify\t{SECRET}\t{sent.timestamp}\t{sent.signature}\t{body}",
        f"verify\t{SECRET}\t{sent.timestamp}\tv1=00ff, {sent.signature}\t{body}",
        f"verify\twhsec_someone_else\t{sent.timestamp}\t{sent.signature}\t{body}",
        f"verify\t{SECRET}\t{sent.stale_timestamp}\t{sent.stale_signature}\t{body}",
        f"verify\t{SECRET}\t{sent.timestamp}\t{sent.signature}\t{b64(sent.body + b' ')}",
    ]


VERIFIED = ["true", "true", "false", "false", "false"]


def test_every_languages_snippets_sign_what_the_api_accepts_and_verify_what_it_sends(
    api: Api, tmp_path: Path
) -> None:
    bodies = {language: json.dumps(event("backend-event-order-created",
                                         event_id=f"evt-order-1001-{language}")).encode()
              for language in LANGUAGES}
    sent = outbound()
    stale = now_s() - int(STALE.total_seconds())
    answers = run_all(tmp_path, {language: [
        f"sign\t{SECRET}\t-\t{b64(bodies[language])}",
        f"sign\t{SECRET}\t{stale}\t{b64(bodies[language])}",
        *verify_requests(sent),
    ] for language in LANGUAGES})
    for language, lines in answers.items():
        body = bodies[language]
        fresh, old = (line.split("\t") for line in lines[:2])
        changed = body.replace(b'"559.15"', b'"1.00"')
        assert api.post_signed(changed, *fresh).status_code == 401, language
        assert api.post_signed(body, *old).status_code == 401, language
        accepted = api.post_signed(body, *fresh)
        assert accepted.status_code == 202, (language, accepted.text)
        assert accepted.json()["stored"] is True, language
        assert lines[2:] == VERIFIED, language


def test_the_python_snippet_signs_posts_and_verifies(api: Api) -> None:
    names: dict[str, Any] = {}
    exec(text("backend-webhooks-python"), names)  # the documented snippet, as a reader runs it
    post_event: Callable[..., dict[str, Any]] = names["post_event"]
    for snippet_id in EVENTS:
        receipt = post_event(api.url, TENANT, SECRET, event(snippet_id))
        assert WebhookReceipt.model_validate(receipt).stored, snippet_id
    again = post_event(api.url, TENANT, SECRET, event("backend-event-order-created"))
    assert again["stored"] is False  # the same event id: applied once
    resent = post_event(api.url, TENANT, SECRET, event("backend-event-order-created",
                                                       event_id="evt-order-1001-resent"))
    assert resent["ignored"] == "duplicate_order"  # the same order id: applied once
    body = b'{"type": "app.opened", "event_id": "evt-late", "occurred_at": "2026-12-07T11:00:00Z"}'
    late = names["sign"](SECRET, body, now_s() - int(STALE.total_seconds()))
    assert api.post_signed(body, late[TIMESTAMP_HEADER], late[SIGNATURE_HEADER]
                           ).status_code == 401
    sent = outbound()
    verify = names["verify"]
    assert verify(SECRET, sent.body, sent.timestamp, sent.signature)
    assert verify(SECRET, sent.body, sent.timestamp, f"v1=00ff, {sent.signature}")
    assert not verify("whsec_someone_else", sent.body, sent.timestamp, sent.signature)
    assert not verify(SECRET, sent.body, sent.stale_timestamp, sent.stale_signature)
    assert not verify(SECRET, sent.body + b" ", sent.timestamp, sent.signature)


def _bash(script: str, folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euc", script], cwd=folder, text=True, timeout=30,
                          capture_output=True, check=False, env={**os.environ, **env})


def test_curl_and_openssl_sign_and_verify(api: Api, tmp_path: Path) -> None:
    (tmp_path / "order.json").write_text(text("backend-event-order-created"))
    settings = {"VITRINA_URL": api.url, "VITRINA_TENANT": TENANT}
    posted = _bash(text("backend-sign-curl"), tmp_path, VITRINA_WEBHOOK_SECRET=SECRET,
                   **settings)
    assert posted.returncode == 0, posted.stderr + posted.stdout
    assert WebhookReceipt.model_validate_json(posted.stdout).event_id == "evt-order-1001"
    forged = _bash(text("backend-sign-curl"), tmp_path, VITRINA_WEBHOOK_SECRET="whsec_x",
                   **settings)
    assert forged.returncode != 0
    assert "signature does not match" in forged.stdout

    sent = outbound()
    (tmp_path / "body.json").write_bytes(sent.body)
    checks = {
        (sent.timestamp, sent.signature, SECRET): 0,
        (sent.timestamp, sent.signature, "whsec_someone_else"): 1,
        (sent.stale_timestamp, sent.stale_signature, SECRET): 1,
    }
    for (timestamp, signature, secret), code in checks.items():
        checked = _bash(text("backend-verify-curl"), tmp_path, TIMESTAMP=timestamp,
                        SIGNATURE=signature, VITRINA_WEBHOOK_SECRET=secret)
        assert checked.returncode == code, (timestamp, secret, checked.stderr)


def _register_key(api: Api, folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The guide's two commands, run in `folder`: keygen (its standard output to the
    file the guide redirects it to), then add. Returns the private key's PEM."""
    monkeypatch.chdir(folder)
    for line in text("backend-token-keys").splitlines():
        words = shlex.split(line)
        assert words[0] == "vitrina-cloud"
        target = None
        if ">" in words:
            target = words[words.index(">") + 1]
            words = words[:words.index(">")]
        result = invoke(words[1:], database_url=api.database_url, tenant=TENANT,
                        monkeypatch=monkeypatch)
        assert result.exit_code == 0, result.output
        if target:
            (folder / target).write_text(result.stdout)
    return (folder / "customer-token-key.pem").read_text()


def test_customer_tokens_signed_as_documented_open_the_customers_routes(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = requests.post(f"{api.url}/tenants/{TENANT}/customers", headers=api.admin_key,
                         json={"external_id": "juan-42"}, timeout=10)
    assert made.status_code in (200, 201, 409), made.text
    customer = next(one["id"] for one in requests.get(
        f"{api.url}/tenants/{TENANT}/customers", headers=api.admin_key, timeout=10).json()
        if one["external_id"] == "juan-42")
    private_pem = _register_key(api, tmp_path, monkeypatch)
    stranger_pem, _public = generate_key_pair(TokenAlgorithm.ES256)

    names: dict[str, Any] = {}
    exec(text("backend-token-python"), names)  # the documented snippet, as a reader runs it
    python_token: Callable[..., str] = names["customer_token"]
    claims = {"kid": "shop-key-1", "tenant": TENANT, "subject": "juan-42"}

    def node(pem: str, lifetime_s: int) -> str:
        return "\t".join(["token", b64(pem.encode()), "shop-key-1", TENANT, "juan-42",
                          str(lifetime_s)])

    made_in_node = run_all(tmp_path, {"node": [
        node(private_pem, 900), node(stranger_pem, 900), node(private_pem, 7200),
    ]})["node"]
    tokens = {
        "python": python_token(private_pem, **claims),
        "python, another key": python_token(stranger_pem, **claims),
        "python, two hours": python_token(private_pem, **claims, lifetime_s=7200),
        "node": made_in_node[0], "node, another key": made_in_node[1],
        "node, two hours": made_in_node[2],
    }
    for name, token in tokens.items():
        answer = requests.get(f"{api.url}/tenants/{TENANT}/customers/{customer}", timeout=10,
                              headers={**api.app_key, "X-Customer-Token": token})
        assert answer.status_code == (200 if "," not in name else 401), (name, answer.text)


def test_the_json_examples_are_what_they_document() -> None:
    for snippet_id in EVENTS:
        parsed = WEBHOOK_ADAPTER.validate_json(text(snippet_id))
        assert parsed.type.value == snippet_id.removeprefix("backend-event-").replace("-", ".",
                                                                                     1)
    WebhookReceipt.model_validate_json(text("backend-receipt"))
    assert WebhookReceipt.model_validate_json(
        text("backend-receipt-duplicate-order")).ignored == "duplicate_order"
    step = ScenarioStepWebhook.model_validate_json(text("backend-outbound-scenario-step"))
    assert step.model_dump(mode="json") == ScenarioStepWebhook.model_validate(
        ScenarioStepWebhook.model_json_schema()["examples"][0]).model_dump(mode="json")
