"""Sending email over SMTP: TLS, authentication, HTML with a text part, one-click
unsubscribe.

Every email carries `List-Unsubscribe` (an HTTPS link, optionally a mailto:) and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058): mailbox providers show an
unsubscribe button from them and demand them of bulk senders. Transactional emails (the
double opt-in request and its reminders) carry them too: RFC 8058 does not restrict them
to marketing, and such a request goes to an address nobody has confirmed yet, so whoever
did not sign up gets the mailbox's own "unsubscribe" instead of only "report spam", and
using it records the "no" that stops the reminders (`cloud.customers.consent`). The
Message-ID is derived from the idempotency key, so a resend of the same step is
recognisable as such.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage as MimeMessage
from email.utils import formatdate
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from cloud.channels.dedupe import collapse_id
from cloud.channels.results import SendResult
from cloud.channels.retry import DEFAULT_RETRY, RetryPolicy, send_with_retries

logger = logging.getLogger(__name__)

#: Reply codes that say the mailbox does not exist (a hard bounce): drop the address.
MAILBOX_GONE_CODES = frozenset({550, 551, 553})


class SmtpSettings(BaseModel):
    """How to reach the tenant's SMTP relay."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1, description="The SMTP relay's host name.")
    port: int = Field(default=587, gt=0, lt=65536, description="The relay's port.")
    security: Literal["starttls", "tls"] = Field(
        default="starttls",
        description="`starttls`: plain connect then STARTTLS (port 587); `tls`: TLS from the "
        "start (465). There is no plaintext mode: credentials and customers' data never "
        "cross unencrypted.")
    username: str | None = Field(default=None, description="The relay login.",
                                 json_schema_extra={"unset": "no login (AUTH) is sent."})
    password: SecretStr | None = Field(default=None, description="The relay password.",
                                       json_schema_extra={"unset": "no password is sent."})
    ca_file: str | None = Field(
        default=None,
        description="CA bundle to trust instead of the system's (a private relay, a local "
        "test server).", json_schema_extra={"unset": "the system's trusted CAs."})
    from_address: str = Field(min_length=3, description="The sender's address (From).")
    from_name: str = Field(default="", description="The sender's display name.")
    timeout_s: float = Field(default=30.0, gt=0,
                             description="How long a relay may take to answer.")
    unsubscribe_mailto: str | None = Field(
        default=None,
        description="A mailto: address added to List-Unsubscribe beside the one-click link.",
        json_schema_extra={"unset": "the one-click link alone."})


@dataclass(frozen=True, slots=True)
class EmailMessage:
    to: str
    subject: str
    text: str
    html: str
    idempotency_key: str
    #: One-click unsubscribe endpoint (HTTPS; receives an empty POST per RFC 8058).
    unsubscribe_url: str
    reply_to: str | None = None


def build_email(message: EmailMessage, settings: SmtpSettings) -> MimeMessage:
    """The MIME message: multipart/alternative, text first so HTML is preferred."""
    if urlsplit(message.unsubscribe_url).scheme != "https":
        raise ValueError("unsubscribe_url must be https (RFC 8058 one-click)")
    domain = settings.from_address.rpartition("@")[2]
    mime = MimeMessage()
    mime["From"] = str(Address(display_name=settings.from_name, addr_spec=settings.from_address))
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = formatdate(localtime=False, usegmt=True)
    mime["Message-ID"] = f"<{collapse_id(message.idempotency_key)}@{domain}>"
    unsubscribe = [f"<{message.unsubscribe_url}>"]
    if settings.unsubscribe_mailto:
        unsubscribe.append(f"<mailto:{settings.unsubscribe_mailto}?subject=unsubscribe>")
    mime["List-Unsubscribe"] = ", ".join(unsubscribe)
    mime["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if message.reply_to:
        mime["Reply-To"] = message.reply_to
    mime.set_content(message.text)
    mime.add_alternative(message.html, subtype="html")
    return mime


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.ca_file)


def result_for_smtp_error(address: str, error: Exception) -> SendResult:
    """Map an smtplib failure for one recipient to a SendResult."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code = next(iter(error.recipients.values()))[0] if error.recipients else 550
        return _by_reply_code(address, code)
    if isinstance(error, smtplib.SMTPResponseException):
        return _by_reply_code(address, error.smtp_code, bounce=False)
    if isinstance(error, ssl.SSLCertVerificationError):
        # The relay's certificate is not trusted: configuration (ca_file), not a passing fault.
        return SendResult(token=address, ok=False, error_code="TLS_UNTRUSTED")
    if isinstance(error, TimeoutError):
        return SendResult(token=address, ok=False, error_code="DEADLINE_EXCEEDED")
    if isinstance(error, smtplib.SMTPException | OSError):
        return SendResult(token=address, ok=False, error_code="UNAVAILABLE")
    return SendResult(token=address, ok=False, error_code="UNKNOWN")


def _by_reply_code(address: str, code: int, *, bounce: bool = True) -> SendResult:
    if 400 <= code < 500:
        return SendResult(token=address, ok=False, error_code="UNAVAILABLE")
    if bounce and code in MAILBOX_GONE_CODES:
        return SendResult(token=address, ok=False, error_code="UNREGISTERED", permanent=True)
    return SendResult(token=address, ok=False, error_code="INVALID_ARGUMENT", permanent=True)


class EmailSender:
    """Delivers a batch over one authenticated TLS session per attempt."""

    def __init__(self, settings: SmtpSettings, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.settings = settings
        self._retry = retry
        self._context = _tls_context(settings)

    def deliver(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        """One result per message, in order. Never raises for a per-recipient error."""
        results: dict[int, SendResult] = {}
        built: dict[int, MimeMessage] = {}
        for index, message in enumerate(messages):
            try:
                built[index] = build_email(message, self.settings)
            except ValueError as exc:
                logger.warning("email %s not sent: %s", message.idempotency_key, exc)
                results[index] = SendResult(
                    token=message.to, ok=False, error_code="INVALID_ARGUMENT", permanent=True
                )

        def send_once(pending: Sequence[int]) -> dict[int, SendResult]:
            return self._send_batch(messages, built, pending)

        results.update(send_with_retries(send_once, sorted(built), self._retry))
        return [results[index] for index in range(len(messages))]

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        client: smtplib.SMTP
        if settings.security == "tls":
            client = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout_s, context=self._context
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s)
            client.ehlo()
            client.starttls(context=self._context)
        client.ehlo()
        if settings.username and settings.password:
            client.login(settings.username, settings.password.get_secret_value())
        return client

    def _send_batch(
        self,
        messages: Sequence[EmailMessage],
        built: dict[int, MimeMessage],
        pending: Sequence[int],
    ) -> dict[int, SendResult]:
        try:
            client = self._connect()
        except smtplib.SMTPAuthenticationError as exc:
            logger.error(
                "SMTP relay %s refused our credentials: %s", self.settings.host, exc.smtp_code
            )
            return {
                i: SendResult(token=messages[i].to, ok=False, error_code="UNAUTHENTICATED")
                for i in pending
            }
        except (smtplib.SMTPException, OSError) as exc:
            logger.warning("SMTP relay %s unreachable: %s", self.settings.host, exc)
            return {i: result_for_smtp_error(messages[i].to, exc) for i in pending}
        outcome: dict[int, SendResult] = {}
        try:
            for index in pending:
                address = messages[index].to
                try:
                    client.send_message(built[index])
                except smtplib.SMTPServerDisconnected as exc:
                    # The session is gone: this and every later message of the batch is transient.
                    rest = pending[pending.index(index) :]
                    outcome.update({i: result_for_smtp_error(messages[i].to, exc) for i in rest})
                    return outcome
                except (smtplib.SMTPException, OSError) as exc:
                    outcome[index] = result_for_smtp_error(address, exc)
                    _reset(client)
                else:
                    outcome[index] = SendResult(
                        token=address, ok=True, provider_message_id=str(built[index]["Message-ID"])
                    )
        finally:
            _quit(client)
        return outcome


def _reset(client: smtplib.SMTP) -> None:
    """After a refused message, RSET so the next one starts a clean transaction."""
    try:
        client.rset()
    except (smtplib.SMTPException, OSError):
        logger.debug("RSET failed; the next message will report the broken session")


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()
