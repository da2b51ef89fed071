"""What a running developer environment tells the commands that talk to it: a JSON file
in its state directory, readable by its owner only (it holds the session's keys), made
when everything has started and removed when it stops.

The tenant's pseudonymization key is kept apart, in a file of its own that outlives the
session: the links the database keeps between customers and their app beacons are made
under it, so a database kept from an earlier session needs the same key.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

SESSION_FILE = "session.json"
TENANT_KEY_FILE = "tenant-key"
#: Where the state lives unless `--state-dir` (or this variable) names another directory.
STATE_DIR_VARIABLE = "VITRINA_DEV_DIR"
DEFAULT_STATE_DIR = Path(".vitrina-dev")


class NotRunningError(RuntimeError):
    """No developer environment is running with this state directory."""


class ToolError(RuntimeError):
    """What the developer asked of the environment cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class DevSession:
    state_dir: str
    tenant: str
    api: str
    database_url: str
    admin_key: str
    app_key: str
    webhook_secret: str
    #: The customer-token key the session registered, as the shop's backend holds it.
    token_kid: str
    token_private_pem: str
    key_id: str
    tenant_key: str
    broker_host: str
    broker_port: int
    broker_mqtt_v5: bool
    fcm_url: str
    fcm_project: str
    fcm_credentials: str
    web_push_url: str
    smtp_listing: str
    email_wired: bool
    sms_url: str

    def save(self) -> Path:
        path = Path(self.state_dir) / SESSION_FILE
        path.touch(mode=0o600)
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, state_dir: Path) -> DevSession:
        path = state_dir / SESSION_FILE
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise NotRunningError(
                f"no developer environment is running with state in {state_dir}/: start "
                "one with `vitrina-cloud dev` (or name its directory with --state-dir)"
            ) from None


def forget_session(state_dir: Path) -> None:
    (state_dir / SESSION_FILE).unlink(missing_ok=True)


def tenant_key(state_dir: Path) -> str:
    """The tenant's pseudonymization secret for this state directory, made on first use."""
    path = state_dir / TENANT_KEY_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    secret = secrets.token_hex(32)
    path.touch(mode=0o600)
    path.write_text(secret + "\n", encoding="utf-8")
    return secret


def state_dir_from(option: Path | None) -> Path:
    """The option, else $VITRINA_DEV_DIR, else ./.vitrina-dev; absolute."""
    if option is not None:
        return option.resolve()
    return Path(os.environ.get(STATE_DIR_VARIABLE) or DEFAULT_STATE_DIR).resolve()


def exports(session: DevSession) -> str:
    """Shell lines that export what a developer's shell and app need (for `eval`). None is
    named like a setting of the orchestrator's (VITRINA_API would be read as `api`)."""
    values = {
        "VITRINA_API_URL": session.api, "VITRINA_TENANT": session.tenant,
        "VITRINA_ADMIN_KEY": session.admin_key, "VITRINA_APP_KEY": session.app_key,
        "VITRINA_WEBHOOK_SECRET": session.webhook_secret, "VITRINA_FCM_URL": session.fcm_url,
        "VITRINA_WEB_PUSH_URL": session.web_push_url, "VITRINA_SMS_URL": session.sms_url,
        "VITRINA_SMTP_LISTING_URL": session.smtp_listing, "VITRINA_DEV_DIR": session.state_dir,
    }
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in values.items())


def admin_api(session: DevSession) -> httpx.Client:
    """The tenant's API as its back office calls it (the session's admin key)."""
    return httpx.Client(base_url=f"{session.api}/tenants/{session.tenant}",
                        headers={"Authorization": f"Bearer {session.admin_key}"},
                        timeout=10.0)


def checked(response: httpx.Response) -> Any:
    """The response's JSON; a refusal becomes a ToolError that shows the API's answer."""
    if response.is_error:
        raise ToolError(f"{response.request.method} {response.request.url.path} -> "
                        f"{response.status_code}: {response.text}")
    return response.json()


def pushes_received(session: DevSession) -> list[dict[str, Any]]:
    """Every push the local FCM server has accepted, oldest first."""
    response = httpx.get(f"{session.fcm_url}/_sandbox/messages", timeout=5.0)
    response.raise_for_status()
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages
