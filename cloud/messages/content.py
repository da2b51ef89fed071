"""What a queued message stores as its `content`.

The rendered parts are stored as JSON when the message is queued, so a retry days later
sends exactly what was decided (a template edited meanwhile changes nothing). An email's
links are listed at that moment too (`cloud.channels.email.trackable_links`): at send
time each becomes a tracked link, which resolves to the stored one and never to a URL
taken from the request (no open redirect).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloud.channels import ContentForm, UnknownChannelError, adapter_for
from cloud.channels.email import trackable_links
from cloud.templates.rendering import Rendered, RenderedEmail, RenderedPush, RenderedText


def channel_matches(channel: str, content: Rendered) -> bool:
    """Whether `content` has the form `channel`'s messages take (and a notification was
    rendered for that very channel); False for a channel nobody registered."""
    try:
        form = adapter_for(channel).form
    except UnknownChannelError:
        return False
    if isinstance(content, RenderedPush):
        return form is ContentForm.NOTIFICATION and content.channel == channel
    if isinstance(content, RenderedEmail):
        return form is ContentForm.EMAIL
    return form is ContentForm.TEXT


def content_json(content: Rendered, *, data: Mapping[str, str], token: str) -> dict[str, Any]:
    """The stored form of rendered parts (with the push data and an email's links)."""
    stored: dict[str, Any]
    if isinstance(content, RenderedPush):
        stored = {
            "kind": ContentForm.NOTIFICATION.value, "title": content.title,
            "body": content.body, "image_url": content.image_url,
            "deep_link": content.deep_link,
        }
    elif isinstance(content, RenderedEmail):
        stored = {
            "kind": ContentForm.EMAIL.value, "subject": content.subject, "html": content.html,
            "text": content.text, "links": trackable_links(content.html, token=token),
        }
    else:
        stored = {"kind": ContentForm.TEXT.value, "text": content.text}
    if data:
        stored["data"] = dict(data)
    return stored


def summary(content: Rendered) -> tuple[str, str]:
    """(title, body) for the message row's readable columns."""
    if isinstance(content, RenderedPush):
        return content.title, content.body
    if isinstance(content, RenderedEmail):
        return content.subject, content.text
    assert isinstance(content, RenderedText)
    return "", content.text
