"""The local provider servers (sandbox/) as child processes, and the settings that point
the orchestrator at them.

Each server prints one JSON line when it listens: where, and the credentials it made
(the FCM service account, the SMS account, the SMTP relay's CA). That line is all the
orchestrator's settings need, so nothing here knows how the servers work inside.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dev.processes import Supervisor

#: Generous bound for a slow machine; it only turns a hang into a clear failure.
START_TIMEOUT_S = 60.0
FCM_PROJECT = "vitrina-demo"
#: The address the local SMTP relay's mail comes from.
MAIL_FROM = "shop@localhost"
#: The VAPID subject the orchestrator signs web pushes with (a mailto: or https: URL).
WEB_PUSH_SUBJECT = "mailto:developer@localhost"


def _announced(supervisor: Supervisor, name: str, module: str, *args: str) -> dict[str, Any]:
    """Start `python -m <module> <args>` and read where it listens from its first line."""
    process = supervisor.start(name, [sys.executable, "-m", module, *args])
    line = supervisor.first_line(process, timeout=START_TIMEOUT_S)
    try:
        announced: dict[str, Any] = json.loads(line)
    except json.JSONDecodeError:
        raise RuntimeError(f"the local {name} server did not start: {line}") from None
    return announced


@dataclass(frozen=True, slots=True)
class FcmServer:
    url: str
    project: str
    credentials: Path

    def settings(self) -> dict[str, str]:
        """`channels.push`: the service account it made, and its address as FCM's."""
        return {"project_id": self.project, "credentials_file": str(self.credentials),
                "endpoint": self.url}


def start_fcm(supervisor: Supervisor, workdir: Path, *, project: str = FCM_PROJECT
              ) -> FcmServer:
    credentials = workdir / "fcm-service-account.json"
    announced = _announced(supervisor, "fcm", "sandbox.fcm", "--project", project,
                           "--credentials-out", str(credentials))
    return FcmServer(url=announced["url"], project=project, credentials=credentials)


@dataclass(frozen=True, slots=True)
class WebPushServer:
    url: str

    def settings(self) -> dict[str, str]:
        return {"subject": WEB_PUSH_SUBJECT}

    @property
    def host_port(self) -> str:
        """What the outbound rules must allow: push endpoints are on this server."""
        return self.url.split("://", 1)[1].rstrip("/")


def start_web_push(supervisor: Supervisor) -> WebPushServer:
    return WebPushServer(url=_announced(supervisor, "webpush", "sandbox.webpush")["url"])


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    ca_file: str
    #: `GET <listing>/_sandbox/emails`: what the relay accepted.
    listing: str
    username: str
    password: str

    def settings(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "security": "starttls",
                "username": self.username, "password": self.password,
                "ca_file": self.ca_file, "from_address": MAIL_FROM}


def start_smtp(supervisor: Supervisor, workdir: Path, *, password: str) -> SmtpServer:
    username = "vitrina"
    announced = _announced(supervisor, "smtp", "sandbox.smtp", "--workdir",
                           str(workdir / "smtp"), "--user", username, f"--password={password}")
    return SmtpServer(host=announced["host"], port=int(announced["port"]),
                      ca_file=announced["ca_file"], listing=announced["listing"],
                      username=username, password=password)


@dataclass(frozen=True, slots=True)
class SmsServer:
    url: str
    account_sid: str
    auth_token: str
    from_number: str

    def settings(self, *, receipts_url: str) -> dict[str, str]:
        """`channels.sms`: Twilio's API at this server; receipts come back to the API."""
        return {"account_sid": self.account_sid, "auth_token": self.auth_token,
                "from_number": self.from_number, "base_url": self.url,
                "status_callback_url": receipts_url}


def start_sms(supervisor: Supervisor) -> SmsServer:
    announced = _announced(supervisor, "sms", "sandbox.sms")
    return SmsServer(url=announced["url"], account_sid=announced["account_sid"],
                     auth_token=announced["auth_token"], from_number=announced["from_number"])
