"""What a queued message stores as its `content`, and the email's tracked form.

The rendered parts are stored as JSON when the message is queued, so a retry days later
sends exactly what was decided (a template edited meanwhile changes nothing). An email's
links are listed at that moment too; at send time each becomes `<base>/c/<token>/<n>`
and an open pixel is added, so a click resolves to the stored link and never to a URL
taken from the request (no open redirect).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

from cloud.messages.models import MessageChannel
from cloud.messages.tokens import email_link, open_pixel_url
from cloud.templates.rendering import Rendered, RenderedEmail, RenderedPush, RenderedSms

#: href="..." or href='...' on any element, case-insensitive.
HREF_RE = re.compile(r"""(\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
#: Links in one email past this are left untracked (a newsletter with hundreds of links
#: would otherwise bloat the stored row).
MAX_TRACKED_LINKS = 50


def channel_matches(channel: MessageChannel, content: Rendered) -> bool:
    if isinstance(content, RenderedPush):
        return content.channel.value == channel.value
    if isinstance(content, RenderedEmail):
        return channel is MessageChannel.EMAIL
    return channel is MessageChannel.SMS


def content_json(content: Rendered, *, data: Mapping[str, str], token: str) -> dict[str, Any]:
    """The stored form of rendered parts (with the push data and an email's links)."""
    stored: dict[str, Any]
    if isinstance(content, RenderedPush):
        stored = {
            "kind": "push", "title": content.title, "body": content.body,
            "image_url": content.image_url, "deep_link": content.deep_link,
        }
    elif isinstance(content, RenderedEmail):
        stored = {
            "kind": "email", "subject": content.subject, "html": content.html,
            "text": content.text, "links": trackable_links(content.html, token=token),
        }
    else:
        stored = {"kind": "sms", "text": content.text}
    if data:
        stored["data"] = dict(data)
    return stored


def summary(content: Rendered) -> tuple[str, str]:
    """(title, body) for the message row's readable columns."""
    if isinstance(content, RenderedPush):
        return content.title, content.body
    if isinstance(content, RenderedEmail):
        return content.subject, content.text
    assert isinstance(content, RenderedSms)
    return "", content.text


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


def tracked_html(document: str, *, links: Sequence[str], base_url: str, token: str) -> str:
    """The email's HTML with its stored links replaced by tracked ones and an open pixel."""
    index = {url: number for number, url in enumerate(links)}

    def replace(match: re.Match[str]) -> str:
        url = html.unescape(match.group(3)).strip()
        number = index.get(url)
        if number is None:
            return match.group(0)
        quote = match.group(2)
        return f"{match.group(1)}{quote}{html.escape(email_link(base_url, token, number))}{quote}"

    rewritten = HREF_RE.sub(replace, document)
    pixel = (
        f'<img src="{html.escape(open_pixel_url(base_url, token))}" width="1" height="1" '
        'alt="" style="display:block;border:0;width:1px;height:1px">'
    )
    closing = rewritten.lower().rfind("</body>")
    if closing == -1:
        return rewritten + pixel
    return rewritten[:closing] + pixel + rewritten[closing:]
