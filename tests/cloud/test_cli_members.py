"""`vitrina-cloud members` as an operator runs it: a tenant's first owner, a lost
password, by exit status and message; the password never on the command line."""

from __future__ import annotations

import shlex
from functools import partial

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from cloud.api import create_app
from tests.cloud.factories import FROM_CONSOLE, cloud_settings
from tests.cloud.test_cli import invoke
from tests.docs.snippets import snippet

PASSWORD = "a long enough pass phrase"


def sign_in(engine: Engine, url: str, tenant: str, email: str, password: str) -> int:
    settings = cloud_settings(tenant=tenant, database_url=url)
    with TestClient(create_app(settings, engine=engine)) as client:
        answer = client.post("/auth/login", json={"email": email, "password": password},
                             headers=FROM_CONSOLE)
    status: int = answer.status_code
    return status


def test_the_first_owner_is_made_with_a_password_from_stdin_and_signs_in(
    engine: Engine, migrated_url: str, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = partial(invoke, database_url=migrated_url, tenant=tenant, monkeypatch=monkeypatch)
    made = run(["members", "add", "--email", "Ana@Shop.example", "--tenant", tenant,
                "--role", "owner", "--name", "Ana", "--password-stdin"], stdin=f"{PASSWORD}\n")
    assert made.exit_code == 0, made.output
    assert f"ana@shop.example (new account) is owner of {tenant}" in made.stdout
    assert "/console" in made.stdout
    assert PASSWORD not in made.output
    assert sign_in(engine, migrated_url, tenant, "ana@shop.example", PASSWORD) == 200
    # An account already there joins a second tenant... of this deployment only.
    other = run(["members", "add", "--email", "ana@shop.example", "--tenant", "elsewhere",
                 "--role", "analyst"])
    assert other.exit_code == 2
    assert "tenant 'elsewhere' is not configured" in other.output
    listed = run(["members", "list", "--tenant", tenant])
    assert listed.exit_code == 0
    assert listed.stdout.splitlines()[1].split() == ["ana@shop.example", "owner", "Ana"]
    with engine.connect() as connection:
        entry = connection.execute(text("SELECT actor_kind, action, target FROM audit_entry")
                                   ).one()
    assert tuple(entry) == ("cli", "member.add", "member:ana@shop.example")


def test_a_role_change_from_the_command_line_keeps_an_owner(
    migrated_url: str, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = partial(invoke, database_url=migrated_url, tenant=tenant, monkeypatch=monkeypatch)
    owner = ["members", "add", "--email", "ana@shop.example", "--tenant", tenant]
    assert run([*owner, "--role", "owner", "--password-stdin"], stdin=PASSWORD).exit_code == 0
    demoted = run([*owner, "--role", "analyst"])
    assert demoted.exit_code == 1
    assert "last owner" in demoted.output


@pytest.mark.parametrize(("password", "message"), [
    ("short", "password refused: string should have at least 12 characters"),
    ("", "password refused"),
])
def test_weak_passwords_and_bad_addresses_are_refused(
    migrated_url: str, tenant: str, monkeypatch: pytest.MonkeyPatch, password: str,
    message: str,
) -> None:
    run = partial(invoke, database_url=migrated_url, tenant=tenant, monkeypatch=monkeypatch)
    weak = run(["members", "add", "--email", "ana@shop.example", "--tenant", tenant,
                "--role", "owner", "--password-stdin"], stdin=password)
    assert weak.exit_code == 2
    assert message in weak.output
    bad = run(["members", "add", "--email", "not an address", "--tenant", tenant,
               "--role", "owner"])
    assert bad.exit_code == 2
    assert "'not an address' is not an email address" in bad.output
    role = run(["members", "add", "--email", "ana@shop.example", "--tenant", tenant,
                "--role", "root"])
    assert role.exit_code == 2
    assert "'root' is not one of" in role.output


def test_a_prompted_password_is_asked_twice_without_echo(
    engine: Engine, migrated_url: str, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = invoke(["members", "add", "--email", "ana@shop.example", "--tenant", tenant,
                   "--role", "marketer"], database_url=migrated_url, tenant=tenant,
                  monkeypatch=monkeypatch, stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert made.exit_code == 0, made.output
    assert "new password for ana@shop.example: \nRepeat for confirmation: " in made.output
    assert PASSWORD not in made.output
    assert sign_in(engine, migrated_url, tenant, "ana@shop.example", PASSWORD) == 200


def test_a_lost_password_is_replaced_and_every_session_ends(
    engine: Engine, migrated_url: str, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = partial(invoke, database_url=migrated_url, tenant=tenant, monkeypatch=monkeypatch)
    run(["members", "add", "--email", "ana@shop.example", "--tenant", tenant, "--role",
         "owner", "--password-stdin"], stdin=PASSWORD)
    assert sign_in(engine, migrated_url, tenant, "ana@shop.example", PASSWORD) == 200
    reset = run(["members", "set-password", "--email", "ana@shop.example",
                 "--password-stdin"], stdin="a replacement pass phrase")
    assert reset.exit_code == 0, reset.output
    assert "1 session(s) ended" in reset.stdout
    assert sign_in(engine, migrated_url, tenant, "ana@shop.example", PASSWORD) == 401
    assert sign_in(engine, migrated_url, tenant, "ana@shop.example",
                   "a replacement pass phrase") == 200
    missing = run(["members", "set-password", "--email", "nobody@shop.example",
                   "--password-stdin"], stdin=PASSWORD)
    assert missing.exit_code == 1
    assert "no member 'nobody@shop.example'" in missing.output


def test_members_on_an_unmigrated_database_say_what_to_do(
    tmp_path: object, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/vitrina.db"
    result = invoke(["members", "list", "--tenant", tenant], database_url=url, tenant=tenant,
                    monkeypatch=monkeypatch)
    assert result.exit_code == 1
    assert "run `vitrina-cloud migrate`" in result.output


def test_the_commands_docs_console_md_gives_make_the_first_owner(
    engine: Engine, migrated_url: str, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both lines as written (the tenant and address made this test's own): asked twice
    at the prompt, and piped in."""
    asked, piped = snippet("docs/console.md", "console-members-add").text.splitlines()
    run = partial(invoke, database_url=migrated_url, tenant=tenant, monkeypatch=monkeypatch)

    def arguments(line: str, email: str) -> list[str]:
        words = shlex.split(line.split("|")[-1], comments=True)
        assert words[0] == "vitrina-cloud"
        return [tenant if word == "shop" else email if word == "ana@shop.example" else word
                for word in words[1:]]

    made = run(arguments(asked, "ana@shop.example"), stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert made.exit_code == 0, made.output
    assert "Repeat for confirmation" in made.output  # asked twice, as the comment says
    assert piped.startswith('echo "$PASSWORD" | ')
    made = run(arguments(piped, "eva@shop.example"), stdin=f"{PASSWORD}\n")
    assert made.exit_code == 0, made.output
    for email in ("ana@shop.example", "eva@shop.example"):
        assert sign_in(engine, migrated_url, tenant, email, PASSWORD) == 200
