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
from dataclasses import asdict, dataclass
from pathlib import Path

SESSION_FILE = "session.json"
TENANT_KEY_FILE = "tenant-key"
#: Where the state lives unless `--state-dir` (or this variable) names another directory.
STATE_DIR_VARIABLE = "VITRINA_DEV_DIR"
DEFAULT_STATE_DIR = Path(".vitrina-dev")


class NotRunningError(RuntimeError):
    """No developer environment is running with this state directory."""


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
