"""A local SMTP relay (aiosmtpd) that insists on STARTTLS and authentication.

It presents a self-signed certificate for 127.0.0.1 and localhost (written to
`ca_file`, which the client must trust explicitly, as it would a private relay's CA),
accepts AUTH PLAIN/LOGIN only over TLS and only with the configured credentials, and
records every accepted message parsed as the recipient's mail client would see it.
Per-recipient scripts answer RCPT with 550 (mailbox unavailable) or 451 (try later).

    python -m sandbox.smtp --port 8025 --user shop --password secret --ca-out /tmp/smtp-ca.pem
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import email
import email.policy
import ipaddress
import json
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sandbox.web import Journal, LocalHTTPServer, Request, Response, Router, json_response

#: Long enough for any test run or demo; the certificate exists only for this process.
CERT_LIFETIME = datetime.timedelta(days=2)
MAILBOX_UNAVAILABLE = "550 5.1.1 Mailbox unavailable"
TRY_LATER = "451 4.3.0 Temporary failure, try again later"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A P-256 certificate for 127.0.0.1 and localhost; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vitrina local smtp")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_LIFETIME)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass(frozen=True, slots=True)
class ReceivedEmail:
    mail_from: str
    recipients: tuple[str, ...]
    message: EmailMessage
    #: The login the client authenticated as (None would mean an unauthenticated relay).
    login: str | None
    received_at: float

    def part(self, subtype: str) -> str:
        """The text of the text/plain or text/html part."""
        body = self.message.get_body(preferencelist=(subtype,))
        if body is None:
            raise LookupError(f"no text/{subtype} part")
        return str(body.get_content())


class _Handler:
    def __init__(self, sandbox: SmtpSandbox) -> None:
        self._sandbox = sandbox

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self._sandbox._rcpt_reply(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        if not isinstance(
            message, EmailMessage
        ):  # pragma: no cover - policy.default makes EmailMessage
            return "554 5.6.0 unparseable message"
        login = (
            session.auth_data.login.decode()
            if isinstance(session.auth_data, LoginPassword)
            else None
        )
        self._sandbox.received.append(
            ReceivedEmail(
                mail_from=str(envelope.mail_from),
                recipients=tuple(envelope.rcpt_tos),
                message=message,
                login=login,
                received_at=time.time(),
            )
        )
        return "250 2.0.0 Message accepted for delivery"


class SmtpSandbox:
    """`with SmtpSandbox(username="shop", password="pw") as smtp: ... smtp.ca_file ...`"""

    def __init__(
        self,
        *,
        username: str = "vitrina",
        password: str = "vitrina-secret",
        host: str = "127.0.0.1",
        port: int = 0,
        workdir: Path | None = None,
        implicit_tls: bool = False,
    ) -> None:
        """`implicit_tls` serves TLS from the first byte (port 465 style) instead of STARTTLS."""
        self.username = username
        self._password = password
        self.host = host
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="vitrina-smtp-") if workdir is None else None
        directory = workdir if workdir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.ca_file, key_file = self_signed_certificate(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_file, key_file)
        self._lock = threading.Lock()
        self._scripts: dict[str, tuple[str, int | None]] = {}
        self.received: Journal[ReceivedEmail] = Journal()
        #: Failed AUTH attempts as (login, reason), for assertions.
        self.auth_failures: Journal[str] = Journal()
        # With implicit TLS the whole session is encrypted, but aiosmtpd only counts STARTTLS
        # towards auth_require_tls (it would never offer AUTH), so that flag is dropped there.
        tls: dict[str, Any] = (
            {"ssl_context": context, "auth_require_tls": False}
            if implicit_tls
            else {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
        )
        if implicit_tls:
            # aiosmtpd warns per connection; here the TLS requirement is met by the socket.
            warnings.filterwarnings(
                "ignore", message="Requiring AUTH while not requiring TLS", category=UserWarning
            )
        self._running = False
        self._controller = Controller(
            _Handler(self),
            hostname=host,
            port=self.port,
            server_hostname="localhost",
            **tls,
            auth_required=True,
            authenticator=self._authenticate,
        )

    def start(self) -> SmtpSandbox:
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Stop serving (idempotent); the certificate goes with the temporary directory."""
        if self._running:
            self._controller.stop()
            self._running = False
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> SmtpSandbox:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def reject(
        self, address: str, reply: str = MAILBOX_UNAVAILABLE, *, times: int | None = None
    ) -> None:
        """Answer RCPT TO for `address` with `reply` (550, 451, ...), `times` times or always."""
        with self._lock:
            self._scripts[address.lower()] = (reply, times)

    def accept(self, address: str) -> None:
        with self._lock:
            self._scripts.pop(address.lower(), None)

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[ReceivedEmail]:
        return self.received.wait_for(count, timeout_s, what="emails")

    def _rcpt_reply(self, address: str) -> str | None:
        with self._lock:
            scripted = self._scripts.get(address.lower())
            if scripted is None:
                return None
            reply, times = scripted
            if times is not None:
                if times <= 1:
                    del self._scripts[address.lower()]
                else:
                    self._scripts[address.lower()] = (reply, times - 1)
            return reply

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            self.auth_failures.append(f"{mechanism}: unsupported credentials")
            return AuthResult(success=False, handled=False)
        ok = (
            auth_data.login.decode() == self.username
            and auth_data.password.decode() == self._password
        )
        if not ok:
            self.auth_failures.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


def _listing(sandbox: SmtpSandbox) -> LocalHTTPServer:
    """A read-only HTTP view of received mail for a demo in another process."""

    def handle(request: Request) -> Response:
        items = sandbox.received.snapshot()
        return json_response(
            200,
            {
                "emails": [
                    {
                        "from": m.mail_from,
                        "to": list(m.recipients),
                        "subject": str(m.message["Subject"]),
                        "list_unsubscribe": str(m.message["List-Unsubscribe"]),
                        "text": m.part("plain"),
                        "received_at": m.received_at,
                    }
                    for m in items
                ]
            },
        )

    router = Router()
    router.add("GET", r"/_sandbox/emails", handle)
    return LocalHTTPServer(router, name="smtp-listing")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.smtp", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", default="vitrina")
    parser.add_argument("--password", default="vitrina-secret")
    parser.add_argument(
        "--workdir", type=Path, required=True, help="where the certificate is written"
    )
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    sandbox = SmtpSandbox(
        username=args.user, password=args.password, port=args.port, workdir=args.workdir
    )
    listing = _listing(sandbox)
    sandbox.start()
    print(
        json.dumps(
            {
                "host": sandbox.host,
                "port": sandbox.port,
                "ca_file": str(sandbox.ca_file),
                "listing": listing.url,
            }
        ),
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: listing.interrupt())
    try:
        with contextlib.suppress(KeyboardInterrupt):
            listing.serve_forever()
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
