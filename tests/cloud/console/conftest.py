"""The console in a real browser: Debian's chromium driven by Playwright (no browser is
downloaded), against the orchestrator serving on a real port on PostgreSQL.

- `console`: the API and console on a port, with a clock tests can move, and members of
  every role already made;
- `browser`: one headless chromium for these tests; `page`: a fresh browser profile per
  test (its own cookies), whose JavaScript errors and failed requests fail the test, and
  whose screen is saved under build/test-artifacts/console/ when a test fails (the
  screenshot tests save the main pages there too).
"""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    sync_playwright,
)
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.auth.permissions import MemberRole
from provisioning.local_broker import free_port
from tests.cloud.conftest import postgres_copy
from tests.cloud.factories import CONSOLE_PASSWORD, add_member, cloud_settings
from tests.cloud.running import running_api

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "build" / "test-artifacts" / "console"
#: What the machine's closed network needs: chromium otherwise tries Google's hosts at
#: every start (and its sandbox needs user namespaces a root CI shell may not give).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
#: Generous for a loaded 2-core machine; a page normally answers in milliseconds.
TIMEOUT_MS = 10_000



class Clock:
    """The server's clock: real time, plus whatever a test adds (session expiry...)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Console:
    url: str
    tenant: str
    engine: Engine
    clock: Clock
    #: Members of the tenant by role: their sign-in address.
    emails: dict[str, str] = field(default_factory=dict)
    #: The app being served (its live streams, for tests that end them).
    app: FastAPI | None = None

    def page_url(self, slug: str) -> str:
        return f"{self.url}/console/t/{self.tenant}/{slug}"


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: run `apt-get install chromium` "
                    "(the test command does, through scripts/ensure-system-packages)")
    return found


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """Playwright's sync API runs an event loop on this thread while it is up: it stops
    when the browser tests are done, before tests that run loops of their own."""
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


def console_settings(tenant: str, database_url: str, **changes: Any) -> Any:
    return cloud_settings(tenant=tenant, database_url=database_url,
                          scenarios={"quiet_hours": None}, **changes)


@pytest.fixture
def migrated_url(schema_templates: dict[str, str]) -> Iterator[str]:
    """Browser tests run on PostgreSQL only, as production does (the API's storage is
    tested on both)."""
    with postgres_copy(schema_templates) as url:
        yield url


@pytest.fixture
def console(engine: Engine, migrated_url: str, tenant: str) -> Iterator[Console]:
    clock = Clock()
    app = create_app(console_settings(tenant, migrated_url), engine=engine, now=clock)
    emails = {}
    for role in MemberRole:
        emails[role.value] = f"{role.value.replace('_', '-')}@shop.example"
        add_member(engine, email=emails[role.value], tenant=tenant, role=role)
    with running_api(app, free_port()) as url:
        yield Console(url=url, tenant=tenant, engine=engine, clock=clock, emails=emails, app=app)


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A new profile per test; script errors and refused requests are collected and fail
    the test (a Content-Security-Policy violation shows up as one of them)."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not expected_error(message.text):
            problems.append(f"console: {message.text}")

    def on_response(response: Response) -> None:
        if response.status >= 400 and "/console/static/" in response.url:
            problems.append(f"missing file: {response.url} ({response.status})")

    tab.on("console", on_console)
    tab.on("response", on_response)
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    yield tab
    # What the page did while the test used it: closing the profile aborts requests still
    # in flight, and what a page logs about that is no fault of the page.
    seen = list(problems)
    failed = getattr(request.node, "failed_call", False)
    if failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=ARTIFACTS / f"failed-{request.node.name}.png", full_page=True)
    context.close()
    assert not seen, seen


def expected_error(text: str) -> bool:
    """Errors the browser logs for answers a page expects and handles: a refused
    request (401/403/404/409/422/429) the page shows to the member. (A missing file of
    the console's own is caught by its response instead.)"""
    return "Failed to load resource: the server responded with a status of 4" in text


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.failed_call = True  # type: ignore[attr-defined]
    return report


def sign_in(page: Page, console: Console, role: str = "owner", *,
            password: str = CONSOLE_PASSWORD) -> None:
    """Sign in through the sign-in page as a person does, landing in the console. The page
    open before is left first: its scripts, finding the session gone, would navigate too."""
    page.goto("about:blank")
    page.goto(f"{console.url}/console")
    page.get_by_label("Email address").fill(console.emails[role])
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{console.url}/console/t/**")


def screenshot(page: Page, name: str) -> None:
    """Keep a picture of the page as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
