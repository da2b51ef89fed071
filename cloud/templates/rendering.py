"""Rendering a saved template: for a send (`render`) and for an admin (`preview`).

`render` takes the send's full context; the template's fields were checked when it was
saved, so it fails only if the context lacks a field the template uses (the error names
it). `preview` renders the sample context, with whatever the admin supplies laid over
it, and adds warnings: the SMS's segments and encoding, and texts that some screens cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloud.channels import ContentForm, TemplateMeasure
from cloud.templates.compiler import Template, render_parts
from cloud.templates.context import PersonalisationContext, merged_context
from cloud.templates.sms import SmsCount, SmsEncoding, count_sms

#: About this many characters of title show in a collapsed notification (Android, iOS).
COLLAPSED_TITLE_CHARS = 40
#: About two lines of body show in a collapsed notification.
COLLAPSED_BODY_CHARS = 120
#: Inbox lists show about this much of a subject line.
INBOX_SUBJECT_CHARS = 60


@dataclass(frozen=True, slots=True)
class RenderedPush:
    """A notification (mobile or browser), for `channel`."""

    channel: str
    title: str
    body: str
    image_url: str | None = None
    deep_link: str | None = None


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


@dataclass(frozen=True, slots=True)
class RenderedText:
    text: str
    #: The SMS segments it takes (for channels that bill by segment).
    count: SmsCount


Rendered = RenderedPush | RenderedEmail | RenderedText


@dataclass(frozen=True, slots=True)
class Preview:
    message: Rendered
    warnings: tuple[str, ...]


def render(template: Template, context: PersonalisationContext) -> Rendered:
    """The message for one send; TemplateError only for a missing field."""
    parts = render_parts(template, context)
    form = template.spec.form
    if form is ContentForm.EMAIL:
        return RenderedEmail(subject=parts["subject"], html=parts["html"], text=parts["text"])
    if form is ContentForm.TEXT:
        return RenderedText(text=parts["text"], count=count_sms(parts["text"]))
    return RenderedPush(
        channel=template.channel,
        title=parts["title"],
        body=parts["body"],
        image_url=parts.get("image_url"),
        deep_link=parts.get("deep_link"),
    )


def preview(template: Template, context: Mapping[str, Any] | None = None) -> Preview:
    """The template rendered for the sample customer, `context` (nested like
    PersonalisationContext, any subset of it) laid over the sample.

    Raises pydantic's ValidationError for invalid values in `context`, TemplateError if
    it removes a section the template uses.
    """
    message = render(template, merged_context(template.locale, context))
    return Preview(message, tuple(_warnings(template, message)))


def _cut(part: str, shown: int, worst: int, limit: int, where: str) -> str | None:
    if worst <= limit:
        return None
    return (
        f"{part}: {shown} characters here, up to {worst} for the longest values; "
        f"{where} shows about {limit}"
    )


def _describe(char: str) -> str:
    return f"'{char}' (U+{ord(char):04X})"


def _warnings(template: Template, message: Rendered) -> list[str]:
    worst = template.worst
    found: list[str | None] = []
    if isinstance(message, RenderedText):
        if TemplateMeasure.SMS_SEGMENTS not in template.spec.measures:
            return []
        count = message.count
        most = worst.sms
        found.append(
            f"text: {count.segments} SMS segment{'s' if count.segments != 1 else ''} here "
            f"({count.encoding}, {count.units} {count.unit_name})"
            + (f", up to {most.segments} for the longest values" if most else "")
        )
        if count.encoding is SmsEncoding.UCS2:
            found.append(
                f"text: {', '.join(map(_describe, count.non_gsm[:5]))} "
                f"force{'s' if len(count.non_gsm) == 1 else ''} UCS-2, "
                "70 characters a segment instead of 160"
            )
    elif isinstance(message, RenderedPush):
        where = "a collapsed notification"
        found.append(_cut(
            "title", len(message.title), worst.chars["title"], COLLAPSED_TITLE_CHARS, where
        ))
        found.append(_cut(
            "body", len(message.body), worst.chars["body"], COLLAPSED_BODY_CHARS, where
        ))
    else:
        found.append(_cut(
            "subject", len(message.subject), worst.chars["subject"], INBOX_SUBJECT_CHARS,
            "an inbox list",
        ))
    return [warning for warning in found if warning]
