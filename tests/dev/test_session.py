"""The developer environment's commands find it by its session file, and say so plainly
when none is running; an install id the app's advert cannot carry is refused."""

from __future__ import annotations

import dataclasses
import shlex
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dev.cli import dev
from dev.gateway import MAX_INSTALL_ID_CHARS, InstallIdError, record_app_visit
from dev.session import DevSession, exports

SESSION = DevSession(
    state_dir="/tmp/state", tenant="shop", api="http://127.0.0.1:8000",
    database_url="sqlite:///x.db", admin_key="admin key's 'quote'", app_key="app",
    webhook_secret="secret", token_kid="dev-1", token_private_pem="pem", key_id="dev-1",
    tenant_key="00" * 32, broker_host="127.0.0.1", broker_port=1883, broker_mqtt_v5=True,
    fcm_url="http://127.0.0.1:1", fcm_project="p", fcm_credentials="/c.json",
    web_push_url="http://127.0.0.1:2", smtp_listing="http://127.0.0.1:3",
    email_wired=False, sms_url="http://127.0.0.1:4",
)


def test_a_command_without_a_running_environment_says_how_to_start_one(
    tmp_path: Path,
) -> None:
    result = CliRunner().invoke(dev, ["env", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no developer environment is running" in result.output
    assert "vitrina-cloud dev" in result.output


def test_the_session_is_kept_private_and_exported_for_a_shell(tmp_path: Path) -> None:
    session = dataclasses.replace(SESSION, state_dir=str(tmp_path))
    path = session.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DevSession.load(tmp_path) == session
    exported = dict(line.removeprefix("export ").split("=", 1)
                    for line in exports(session).splitlines())
    assert shlex.split(exported["VITRINA_ADMIN_KEY"]) == [session.admin_key]
    # None is read by the orchestrator as a setting of its own (VITRINA_API would be).
    assert "VITRINA_API" not in exported
    result = CliRunner().invoke(dev, ["env", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert f"export VITRINA_API_URL={session.api}" in result.output


def test_an_install_id_longer_than_the_advert_carries_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InstallIdError, match="does not fit"):
        record_app_visit(tmp_path / "visit.pcapng", install_id="x" * (MAX_INSTALL_ID_CHARS + 1),
                         start=0.0)
    assert not (tmp_path / "visit.pcapng").exists()
