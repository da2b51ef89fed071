"""What an admin sends to save a template: a channel, a locale and the channel's parts.

    {"channel": "sms", "locale": "es-ES",
     "parts": {"text": "Hola {{ customer.first_name }}, tu cupón: {{ coupon.code }}"}}

The parts are validated by the model for the channel's form (`cloud.channels`: push and
web push are notifications, email is email, SMS is text); each is Jinja2 source, checked
further by `compile_template`. `TemplateLimits` holds what a tenant may tune.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from cloud.channels import Channel, ContentForm, TemplateMeasure, adapter_for, channel_names
from cloud.templates.formatting import Locale

# Source sizes: generous for what each part is, small enough that checking stays cheap.
# (pydantic already refuses lone surrogates, which no provider could encode.)
TitleSource = Annotated[str, StringConstraints(min_length=1, max_length=1_000)]
BodySource = Annotated[str, StringConstraints(min_length=1, max_length=4_000)]
UrlSource = Annotated[str, StringConstraints(min_length=1, max_length=4_000)]
HtmlSource = Annotated[str, StringConstraints(min_length=1, max_length=200_000)]
TextSource = Annotated[str, StringConstraints(min_length=1, max_length=100_000)]


class _Parts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def sources(self) -> dict[str, str]:
        """Each present part's source, by part name, in declaration order."""
        return {
            name: value
            for name, value in self
            if name != "form" and isinstance(value, str)
        }


class PushParts(_Parts):
    """A notification (mobile or web push)."""

    form: Literal[ContentForm.NOTIFICATION] = Field(exclude=True)
    title: TitleSource
    body: BodySource
    image_url: UrlSource | None = None
    deep_link: UrlSource | None = None


class EmailParts(_Parts):
    form: Literal[ContentForm.EMAIL] = Field(exclude=True)
    subject: TitleSource
    html: HtmlSource
    text: TextSource


class TextParts(_Parts):
    """A text (SMS, or any channel of plain texts)."""

    form: Literal[ContentForm.TEXT] = Field(exclude=True)
    text: BodySource


Parts = Annotated[PushParts | EmailParts | TextParts, Field(discriminator="form")]
#: Parts holding a URL rather than prose.
URL_PARTS = frozenset({"image_url", "deep_link"})
#: Parts rendered as HTML, and so autoescaped.
HTML_PARTS = frozenset({"html"})


class TemplateSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    locale: Locale
    parts: Parts

    @model_validator(mode="before")
    @classmethod
    def _parts_follow_channel(cls, data: Any) -> Any:
        """The admin names the channel once; the parts model is chosen by its form (an
        unknown channel is refused by the `channel` field itself)."""
        if isinstance(data, dict) and isinstance(data.get("parts"), dict):
            channel = data.get("channel")
            if isinstance(channel, str) and channel in channel_names():
                form = adapter_for(channel).form
                return {**data, "parts": {**data["parts"], "form": form.value}}
        return data

    @property
    def form(self) -> ContentForm:
        return adapter_for(self.channel).form

    @property
    def measures(self) -> frozenset[TemplateMeasure]:
        return adapter_for(self.channel).measures


#: Each segment is billed as one text; four is a generous default for a marketing SMS.
DEFAULT_SMS_MAX_SEGMENTS = 4
#: Android's expanded notification shows about 65 characters of title before cutting it.
DEFAULT_PUSH_TITLE_CHARS = 65
#: Android's expanded (big text) notification shows about 240 characters of body.
DEFAULT_PUSH_BODY_CHARS = 240


@dataclass(frozen=True, slots=True)
class TemplateLimits:
    """What a tenant may tune; checked against each template at its longest."""

    sms_max_segments: int = DEFAULT_SMS_MAX_SEGMENTS
    push_title_chars: int = DEFAULT_PUSH_TITLE_CHARS
    push_body_chars: int = DEFAULT_PUSH_BODY_CHARS

    def __post_init__(self) -> None:
        for name in ("sms_max_segments", "push_title_chars", "push_body_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
