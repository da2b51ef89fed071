"""Email: one message to the customer's own address, through the tenant's SMTP relay.

Every email carries a one-click unsubscribe link (RFC 8058), which must be https, and
tracked links: each link listed when the message was queued becomes
`<base>/c/<token>/<n>` and an open pixel is added, so a click resolves to the stored link
and never to a URL taken from the request (no open redirect). SMTP acceptance is "sent":
mail has no delivery receipt.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import timedelta

from cloud.channels.base import (
    CapDefault,
    ChannelAdapter,
    ContentForm,
    DeploymentSender,
    Outbound,
    ProfileAddress,
    Recipient,
    SenderEnvironment,
    UnsendableError,
)
from cloud.channels.smtp import EmailMessage, EmailSender, SmtpSettings

NAME = "email"
#: href="..." or href='...' on any element, case-insensitive.
HREF_RE = re.compile(r"""(\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
#: Links in one email past this are left untracked (a newsletter with hundreds of links
#: would otherwise bloat the stored row).
MAX_TRACKED_LINKS = 50


class EmailChannel(ChannelAdapter[SmtpSettings, EmailMessage]):
    name = NAME
    consent = NAME
    provider = "smtp"
    form = ContentForm.EMAIL
    address = ProfileAddress("email")
    settings_model = SmtpSettings
    unconfigured = "no SMTP: emails (the double opt-in ones included) are not sent"
    needs_https_links = True
    default_cap = CapDefault(max=2, per=timedelta(days=1))

    def payload(self, outbound: Outbound, recipient: Recipient) -> EmailMessage | None:
        if not recipient.address:
            return None
        links = outbound.links
        if links is None:
            # Every email carries a one-click unsubscribe link made from its token; a row
            # without one was not written by the send queue and never will have one.
            raise UnsendableError("no_unsubscribe_link")
        stored = [str(link) for link in outbound.content.get("links", [])]
        return EmailMessage(
            to=recipient.address, subject=outbound.part("subject", outbound.title),
            text=outbound.part("text", outbound.body),
            html=tracked_html(outbound.part("html", ""), links=stored,
                              tracked=links.email_links, pixel=links.open_pixel),
            idempotency_key=outbound.idempotency_key, unsubscribe_url=links.unsubscribe,
        )

    def open_sender(
        self, settings: SmtpSettings, environment: SenderEnvironment
    ) -> DeploymentSender[EmailMessage]:
        # SMTP sessions last one batch: nothing stays open to close.
        return DeploymentSender(EmailSender(settings).deliver)


def tracked_html(
    document: str, *, links: Sequence[str], tracked: Sequence[str], pixel: str
) -> str:
    """The email's HTML with each stored link replaced by its tracked one (`tracked[n]`
    for `links[n]`) and an open pixel before `</body>`."""
    index = dict(zip(links, tracked, strict=False))

    def replace(match: re.Match[str]) -> str:
        url = html.unescape(match.group(3)).strip()
        target = index.get(url)
        if target is None:
            return match.group(0)
        quote = match.group(2)
        return f"{match.group(1)}{quote}{html.escape(target)}{quote}"

    rewritten = HREF_RE.sub(replace, document)
    image = (
        f'<img src="{html.escape(pixel)}" width="1" height="1" '
        'alt="" style="display:block;border:0;width:1px;height:1px">'
    )
    closing = rewritten.lower().rfind("</body>")
    if closing == -1:
        return rewritten + image
    return rewritten[:closing] + image + rewritten[closing:]


def trackable_links(document: str, *, token: str) -> list[str]:
    """The distinct http(s) links of an HTML document, in order of appearance.

    Unsubscribe links (ours, `/u/<token>`, or a shop page that says "unsubscribe") stay
    as they are: a click on one is not engagement, and it must work even if the
    tracking host is down.
    """
    found: list[str] = []
    for match in HREF_RE.finditer(document):
        url = html.unescape(match.group(3)).strip()
        lowered = url.lower()
        if (
            not lowered.startswith(("http://", "https://"))
            or "unsubscribe" in lowered
            or url.rstrip("/").endswith(f"/u/{token}")
        ):
            continue
        if url not in found:
            found.append(url)
        if len(found) >= MAX_TRACKED_LINKS:
            break
    return found
