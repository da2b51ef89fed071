"""The local provider servers (sandbox/) as child processes, and the settings that point
the orchestrator at them.

Each server prints one JSON line when it listens: where, and the credentials it made
(the FCM service account, the SMS account, the SMTP relay's CA). That line is all the
orchestrator's settings need, so nothing here knows how the servers work inside.
"""

from __future__ import annotations

import json
import subprocess
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


@dataclass(frozen=True, slots=True)
class Starting:
    """A server started and not yet listening; `announced()` waits until it is."""

    supervisor: Supervisor
    name: str
    process: subprocess.Popen[str]

    def announced(self) -> dict[str, Any]:
        """Where it listens (and what it made), from the JSON line it prints."""
        line = self.supervisor.announcement(self.process, timeout=START_TIMEOUT_S)
        try:
            announced: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            raise RuntimeError(f"the local {self.name} server did not start: {line}") from None
        return announced


def _start(supervisor: Supervisor, name: str, module: str, *args: str) -> Starting:
    """`python -m <module> <args>`, not waited for: servers start side by side."""
    return Starting(supervisor, name,
                    supervisor.start(name, [sys.executable, "-m", module, *args]))


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
    announced = _start(supervisor, "fcm", "sandbox.fcm", "--project", project,
                       "--credentials-out", str(credentials)).announced()
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


@dataclass(frozen=True, slots=True)
class Servers:
    fcm: FcmServer
    web_push: WebPushServer
    smtp: SmtpServer
    sms: SmsServer


def start_all(supervisor: Supervisor, workdir: Path, *, smtp_password: str) -> Servers:
    """All four, started side by side (each is a Python process that takes a moment to
    import its libraries), then each waited for."""
    credentials = workdir / "fcm-service-account.json"
    smtp_user = "vitrina"
    fcm = _start(supervisor, "fcm", "sandbox.fcm", "--project", FCM_PROJECT,
                 "--credentials-out", str(credentials))
    web_push = _start(supervisor, "webpush", "sandbox.webpush")
    smtp = _start(supervisor, "smtp", "sandbox.smtp", "--workdir", str(workdir / "smtp"),
                  "--user", smtp_user, f"--password={smtp_password}")
    sms = _start(supervisor, "sms", "sandbox.sms")
    mail = smtp.announced()
    texts = sms.announced()
    return Servers(
        fcm=FcmServer(url=fcm.announced()["url"], project=FCM_PROJECT, credentials=credentials),
        web_push=WebPushServer(url=web_push.announced()["url"]),
        smtp=SmtpServer(host=mail["host"], port=int(mail["port"]), ca_file=mail["ca_file"],
                        listing=mail["listing"], username=smtp_user, password=smtp_password),
        sms=SmsServer(url=texts["url"], account_sid=texts["account_sid"],
                      auth_token=texts["auth_token"], from_number=texts["from_number"]),
    )
