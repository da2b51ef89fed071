"""The web client under web/ against the real API: one server for the module, and every
Node test (the client's own, the ones against the API, and the web snippets of
docs/app-guide.md run in the guide's order) in one `node --test` run, with the type check
beside it. Also the API's CORS answers, which pages of a web shop need.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import col, select

from cloud.api import create_app
from cloud.auth.models import Role
from cloud.channels.dedupe import collapse_id
from cloud.customers.crud import current_consent, find_by_external_id
from cloud.customers.models import Device
from cloud.db import make_engine, session_scope
from cloud.messages.models import Message
from cloud.settings import Settings
from provisioning.local_broker import free_port
from tests.cloud.delivery.queue_helpers import new_customer, outgoing, queue, queue_settings
from tests.cloud.factories import (
    bearer,
    cloud_settings,
    issue_key,
    register_shop_backend,
)
from tests.cloud.running import running_api
from tests.docs.snippets import ROOT, snippets
from tests.support.node import WEB, ensure_web_packages, node, tsc
from tests.support.shop_backend import ShopBackend

GUIDE = "docs/app-guide.md"
#: The guide's web snippets, in its order: each one runs, and the run checks it ran all.
WEB_SNIPPETS = (
    "app-web-client", "app-web-installation", "app-web-sign-in", "app-web-consent",
    "app-web-push", "app-web-location", "app-web-opened", "app-web-errors",
)
MADRID = (40.4168, -3.7038)
#: Customers the shop's backend signs tokens for: who exists before the run (with a push
#: sent to them), and who signs up during it.
EXISTING = {"juan": "juan-42", "ana": "ana-7", "maria": "maria-5"}
NEW = {"lucia": "lucia-3"}


@dataclass(frozen=True)
class RunningApi:
    base: str
    tenant: str
    engine: Engine
    fixture: dict[str, Any]


def _prepare_customer(engine: Engine, tenant: str, backend: ShopBackend, name: str,
                      external_id: str, base: str) -> dict[str, Any]:
    """A signed-up customer with a push sent to them, as the app would learn of them."""
    number = new_customer(engine, tenant, consent=("push",), external_id=external_id)
    key = f"{name}:welcome"
    message = outgoing(tenant, number, key)
    [message_id] = queue(engine, message)
    with session_scope(engine) as session:
        customer = find_by_external_id(session, tenant=tenant, external_id=external_id)
        assert customer is not None
        public_id = customer.public_id
    return {
        "id": public_id, "token": _token(backend, external_id), "message_id": message_id,
        "open_url": f"{base}/o/{message.tracking_token}", "tag": collapse_id(key),
    }


def _token(backend: ShopBackend, subject: str) -> str:
    return backend.token(subject, now=datetime.now(UTC))


@pytest.fixture(scope="module")
def api(schema_templates: dict[str, str], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[RunningApi]:
    """The API on a real port over a migrated SQLite, with a store and its geofence, an
    app key, the shop backend's signing key, and customers it signs tokens for."""
    database = tmp_path_factory.mktemp("web-client") / "vitrina.db"
    shutil.copyfile(schema_templates["sqlite"], database)
    url = f"sqlite:///{database}"
    engine = make_engine(url)
    tenant = "webshop"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(queue_settings(tenant=tenant, database_url=url), engine=engine)
    app_key = issue_key(engine, tenant=tenant, role=Role.APP)
    admin_key = issue_key(engine, tenant=tenant)
    backend = register_shop_backend(engine, tenant=tenant)
    customers = {name: _prepare_customer(engine, tenant, backend, name, external, base)
                 for name, external in EXISTING.items()}
    customers |= {name: {"token": _token(backend, external)} for name, external in NEW.items()}
    with running_api(app, port):
        admin = httpx.Client(base_url=f"{base}/tenants/{tenant}", headers=bearer(admin_key))
        with admin:
            assert admin.put("/stores/madrid-01", json={
                "name": "Madrid Centro", "time_zone": "Europe/Madrid"}).status_code == 200
            assert admin.put("/geofences/centro", json={
                "store": "madrid-01", "dwell_after_s": 300,
                "shape": {"circle": {"lat": MADRID[0], "lon": MADRID[1], "radius_m": 100}},
            }).status_code == 200
        yield RunningApi(base=base, tenant=tenant, engine=engine, fixture={
            "api_base": base, "tenant": tenant, "app_key": app_key, "customers": customers,
            "geofence": {"lat": MADRID[0], "lon": MADRID[1], "store": "madrid-01",
                         "geofence": "centro"},
        })
    engine.dispose()


# --- the guide's web snippets as one Node test --------------------------------------------


def guide_test(directory: Path) -> Path:
    """The guide's web snippets as a Node test module: their imports at its top, their
    bodies in one scope in the guide's order (as a page pasting them in turn), around them
    the page the guide describes (`docs-harness.js`). It resolves `vitrina-web` through a
    node_modules beside it that links to web/."""
    blocks = [one for one in snippets(GUIDE) if one.language == "js"]
    assert tuple(one.id for one in blocks) == WEB_SNIPPETS
    imports: list[str] = []
    body: list[str] = []
    for block in blocks:
        body.append(f"    step = {json.dumps(block.id)};")
        for line in block.text.splitlines():
            if line.startswith("import "):
                assert line.endswith(";"), f"{block.id}: one import a line: {line}"
                imports.append(line)
            else:
                body.append(f"    {line}" if line else "")
        body.append("    ran.push(step);")
    (directory / "node_modules").mkdir()
    (directory / "node_modules" / "vitrina-web").symlink_to(WEB, target_is_directory=True)
    harness = (WEB / "test" / "support" / "docs-harness.js").as_uri()
    running = (WEB / "test" / "support" / "running-api.js").as_uri()
    source = "\n".join([
        'import test from "node:test";',
        'import assert from "node:assert/strict";',
        f'import {{ installPage }} from "{harness}";',
        f'import {{ runningApi }} from "{running}";',
        *dict.fromkeys(imports),
        "",
        f"test({json.dumps(GUIDE + ': the web snippets, in order')}, async () => {{",
        '  const seen = installPage(runningApi(), "maria");',
        "  const ran = [];",
        '  let step = "";',
        "  try {",
        *body,
        "  } catch (error) {",
        f"    throw new Error(`{GUIDE} snippet ${{step}}: ${{error.message}}`, "
        "{ cause: error });",
        "  }",
        f"  assert.deepEqual(ran, {json.dumps(list(WEB_SNIPPETS))});",
        '  assert.deepEqual(seen.serviceWorkers, ["/sw.js"]);',
        "  assert.ok(seen.tokenRequests > 0);",
        "});",
        "",
    ])
    path = directory / "app-guide.test.js"
    path.write_text(source, encoding="utf-8")
    return path


def node_tests() -> list[str]:
    """web/test's test files (a directory given to Node 20's runner would run every
    module in it, the support ones too)."""
    return sorted(str(path.relative_to(WEB)) for path in (WEB / "test").glob("*.test.*js"))


def failures(tap: str) -> str:
    """The failed tests' part of a TAP report, for the assertion's message."""
    blocks = re.findall(r"^ *not ok .*?(?=^ *(?:ok|not ok) |\Z)", tap, re.MULTILINE | re.DOTALL)
    return "\n".join(blocks)[-8000:] or tap[-4000:]


def printed_by(snippet_id: str) -> list[str]:
    """The lines of the ```text block that follows a snippet: what the guide says it prints."""
    blocks = snippets(GUIDE)
    index = next(i for i, one in enumerate(blocks) if one.id == snippet_id)
    shown = blocks[index + 1]
    assert shown.language == "text", f"{snippet_id} is followed by no output block"
    return shown.text.splitlines()


def _count(output: str, what: str) -> int:
    found = re.search(rf"^# {what} (\d+)$", output, re.MULTILINE)
    assert found, output
    return int(found.group(1))


def test_the_web_client_its_types_and_the_guide_against_the_api(
    api: RunningApi, tmp_path: Path
) -> None:
    ensure_web_packages()
    declarations = tmp_path / "types"
    # The type check, and the declarations `npm pack` ships made from the same types.
    check = subprocess.Popen(
        [node(), str(tsc()), "-p", "tsconfig.json", "--noEmit", "false", "--declaration",
         "--emitDeclarationOnly", "--outDir", str(declarations)],
        cwd=WEB, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    guide = guide_test(tmp_path)
    run = subprocess.run(
        [node(), "--test", "--test-reporter=tap", *node_tests(), str(guide)], cwd=WEB,
        env={"PATH": str(Path(node()).parent), "HOME": str(tmp_path),
             "VITRINA_TEST_API": json.dumps(api.fixture)},
        capture_output=True, text=True, timeout=120, check=False,
    )
    typed, _ = check.communicate(timeout=120)

    assert run.returncode == 0, failures(run.stdout) + run.stderr[-3000:]
    assert _count(run.stdout, "fail") == 0
    assert _count(run.stdout, "skipped") == 0, "a test against the API did not run"
    assert _count(run.stdout, "pass") >= 20
    for line in printed_by("app-web-errors"):
        assert f"# {line}\n" in run.stdout, f"app-web-errors does not print {line!r}"
    assert check.returncode == 0, f"tsc -p web/tsconfig.json:\n{typed}"
    _declarations_are_where_the_manifest_says(declarations)
    _the_guide_left_its_marks(api)


def _declarations_are_where_the_manifest_says(declarations: Path) -> None:
    manifest = json.loads((WEB / "package.json").read_text())
    typed = [manifest["types"], *(target["types"] for target in manifest["exports"].values()
                                  if isinstance(target, dict))]
    for path in typed:
        emitted = declarations / Path(path).relative_to("types")
        assert emitted.is_file(), f"{path} is not what tsc makes"
    index = (declarations / "index.d.ts").read_text()
    assert "VitrinaClient" in index
    assert "VitrinaForbiddenError" in index


def _the_guide_left_its_marks(api: RunningApi) -> None:
    """What the web snippets did is in the database: maria's browser subscription, her
    answers (the last one withdrawing location offers) and her push opened."""
    with session_scope(api.engine) as session:
        maria = find_by_external_id(session, tenant=api.tenant, external_id=EXISTING["maria"])
        assert maria is not None
        assert maria.id is not None
        kinds = session.exec(select(Device.kind).where(Device.customer_id == maria.id)).all()
        answers = current_consent(session, customer_id=maria.id)
        opened = session.exec(select(Message.opened_at).where(
            col(Message.customer_id) == maria.id)).all()
    assert "web_push" in kinds
    assert answers["web_push"].granted
    assert not answers["location_marketing"].granted
    assert all(at is not None for at in opened)


# --- CORS ------------------------------------------------------------------------------------


def test_pages_of_the_listed_origins_may_call_the_api_and_no_others(
    api: RunningApi, tmp_path: Path
) -> None:
    settings = cloud_settings(tenant="shop", database_url=f"sqlite:///{tmp_path / 'x.db'}",
                              api={"cors_origins": ["https://shop.example"]})
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type,x-customer-token"}
    with TestClient(create_app(settings)) as client:
        allowed = client.options("/tenants/shop/customers",
                                 headers={"Origin": "https://shop.example", **preflight})
        other = client.options("/tenants/shop/customers",
                               headers={"Origin": "https://evil.example", **preflight})
        refusal = client.get("/tenants/shop/customers", headers={"Origin": "https://shop.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert "x-customer-token" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    assert refusal.status_code == 401  # a refusal the page can read
    assert refusal.headers["access-control-allow-origin"] == "https://shop.example"
    assert "retry-after" in refusal.headers["access-control-expose-headers"].lower()

    # without cors_origins (the module's API): no page of another origin may read answers
    answer = httpx.get(f"{api.base}/tenants/{api.tenant}/customers",
                       headers={"Origin": "https://shop.example"})
    assert answer.status_code == 401
    assert "access-control-allow-origin" not in answer.headers


def test_an_origin_is_a_scheme_and_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINA_API__CORS_ORIGINS", '["https://shop.example"]')
    assert Settings().api.cors_origins == ["https://shop.example"]  # as docs/app-guide.md says
    for wrong in ("*", "https://shop.example/", "shop.example", "https://shop.example/app"):
        with pytest.raises(ValueError, match="is not an origin"):
            cloud_settings(tenant="shop", database_url="sqlite://", api={"cors_origins": [wrong]})


def test_the_package_is_what_its_manifest_says() -> None:
    """package.json's exports name files that exist, and the lock pins what it asks for."""
    manifest = json.loads((WEB / "package.json").read_text())
    lock = json.loads((WEB / "package-lock.json").read_text())
    assert manifest["type"] == "module"
    for target in manifest["exports"].values():
        paths = target.values() if isinstance(target, dict) else [target]
        for path in paths:
            if not path.startswith("./types/"):  # made by prepack (tsconfig.build.json)
                assert (WEB / path).is_file(), path
    for entry in manifest["files"]:
        assert entry.startswith("types/") or (WEB / entry).exists(), entry
    for name, version in manifest["devDependencies"].items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    assert lock["packages"][""]["devDependencies"] == manifest["devDependencies"]
    assert (ROOT / "web" / "tsconfig.build.json").is_file()
