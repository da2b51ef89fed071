"""Message templates over HTTP: save (checked), read, delete, list, preview.

PUT /tenants/{tenant}/templates/{key}/{channel}/{locale} with {"parts": {...}} compiles
the template before storing it: whatever would fail at send time (an unknown field, a
syntax error, a missing unsubscribe link, an SMS too long at its longest) is a 422 now,
naming the part, line and field. POST /tenants/{tenant}/templates/preview renders a
template (given, or saved: with the locale fallback a send would use) for the sample
customer with whatever context the admin lays over it, and says what to watch for.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, model_validator

from cloud.api.access import MayReadConfig, MayWriteTemplates
from cloud.api.audit import Audit
from cloud.api.deps import NowDep, SessionDep
from cloud.api.limits import MIB, body_limit
from cloud.channels import Channel
from cloud.customers.models import LOCALE_PATTERN
from cloud.examples import example
from cloud.templates.compiler import Template, compile_template
from cloud.templates.crud import (
    TEMPLATE_KEY_PATTERN,
    MessageTemplate,
    TemplateKey,
    compiled,
    delete_template,
    get_template,
    list_templates,
    load_template,
    save_template,
)
from cloud.templates.errors import TemplateError
from cloud.templates.formatting import Locale
from cloud.templates.rendering import RenderedEmail, RenderedPush, RenderedText, preview
from cloud.templates.spec import TemplateSpec
from shared.errors import describe_validation_error

KeyPath = Annotated[str, Path(pattern=TEMPLATE_KEY_PATTERN)]

router = APIRouter(tags=["templates"])


class TemplateSave(BaseModel):
    """The parts of one template (push and web push: title, body, image_url, deep_link;
    email: subject, html, text; SMS: text); channel and locale are in the path."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=example(
        {"parts": {"title": "{{ customer.first_name }}, your cart is waiting",
                   "body": "{{ offer.discount_percent|percent }} off {{ offer.product_name }}"}},
    ))

    parts: dict[str, Any]


class TemplatePublic(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"key": "cart", "channel": "push", "locale": "en-GB",
         "parts": {"title": "{{ customer.first_name }}, your cart is waiting",
                   "body": "{{ offer.discount_percent|percent }} off {{ offer.product_name }}"},
         "fields": ["customer.first_name", "offer.discount_percent", "offer.product_name"],
         "version": 2, "created_at": "2026-11-20T09:00:00Z", "updated_at": "2026-12-07T08:00:00Z"},
    ))

    key: str
    channel: Channel
    locale: Locale
    parts: dict[str, Any]
    fields: list[str]
    version: int
    created_at: datetime
    updated_at: datetime


class PreviewRequest(BaseModel):
    """A template to preview: `spec` (not saved), or a saved one by key, channel and
    locale (the locale a customer has: the same fallback as a send). `context` is laid
    over the sample context, nested like it ({"customer": {"first_name": "Ana"}}); a
    section set to null is left out."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=example(
        {"key": "cart", "channel": "push", "locale": "en-GB",
         "context": {"customer": {"first_name": "Juan"}}},
    ))

    spec: TemplateSpec | None = None
    key: TemplateKey | None = None
    channel: Channel | None = None
    locale: Annotated[str, StringConstraints(pattern=LOCALE_PATTERN)] | None = None
    context: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_template(self) -> PreviewRequest:
        saved = self.key is not None or self.channel is not None or self.locale is not None
        if (self.spec is None) == (not saved):
            raise ValueError("give either spec, or key, channel and locale of a saved template")
        if self.spec is None and (self.key is None or self.channel is None):
            raise ValueError("a saved template needs key and channel (and locale)")
        return self


class PreviewPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"channel": "push", "locale": "en-GB", "key": "cart", "version": 2,
         "message": {"title": "Juan, your cart is waiting",
                     "body": "15% off Washing machine 8 kg until tomorrow"},
         "warnings": []},
    ))

    channel: Channel
    locale: Locale
    key: str | None = None
    version: int | None = None
    message: dict[str, Any]
    warnings: list[str]


def _template_error(error: TemplateError) -> HTTPException:
    """422 with the message and where it is, so an admin screen can point at it."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, {
        "message": str(error), "part": error.part, "line": error.line, "field": error.field,
    })


def _public(row: MessageTemplate, template: Template) -> TemplatePublic:
    return TemplatePublic(
        key=row.key, channel=row.channel, locale=Locale(row.locale),
        parts=dict(row.spec.get("parts", {})), fields=sorted(template.fields),
        version=row.version, created_at=row.created_at, updated_at=row.updated_at,
    )


def _row_or_404(session: SessionDep, tenant: str, key: str, channel: Channel, locale: Locale
                ) -> MessageTemplate:
    row = get_template(session, tenant=tenant, key=key, channel=channel, locale=locale.value)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"template {key!r} for {channel} in {locale.value} not found")
    return row


#: An email template at its longest parts (300,000 characters) in escaped JSON (6 bytes
#: a character) fits (tests/cloud/api/test_limits.py measures it).
TEMPLATE_BODY_LIMIT = 4 * MIB


@router.put("/templates/{key}/{channel}/{locale}", response_model=TemplatePublic,
            openapi_extra=body_limit(TEMPLATE_BODY_LIMIT))
def put_template_route(
    caller: MayWriteTemplates, session: SessionDep, now: NowDep, audit: Audit, tenant: str,
    key: KeyPath, channel: Channel, locale: Locale, data: TemplateSave,
) -> TemplatePublic:
    """Save a template after checking everything a send could trip on (422 otherwise)."""
    try:
        spec = TemplateSpec.model_validate(
            {"channel": channel, "locale": locale, "parts": data.parts}
        )
    except ValidationError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"invalid template: {describe_validation_error(error)}") from None
    found = get_template(session, tenant=tenant, key=key, channel=channel, locale=locale.value)
    before = _public(found, compiled(found)) if found is not None else None
    try:
        row, template = save_template(session, tenant=tenant, key=key, spec=spec,
                                      now=now)
    except TemplateError as error:
        raise _template_error(error) from None
    after = _public(row, template)
    audit.record("template.put", f"template:{key}/{channel}/{locale.value}", before=before,
                 after=after)
    session.commit()
    return after


@router.get("/templates", response_model=list[TemplatePublic])
def list_templates_route(
    caller: MayReadConfig, session: SessionDep, tenant: str,
    key: Annotated[str | None, Query(pattern=TEMPLATE_KEY_PATTERN)] = None,
) -> list[TemplatePublic]:
    return [_public(row, compiled(row))
            for row in list_templates(session, tenant=tenant, key=key)]


@router.get("/templates/{key}/{channel}/{locale}", response_model=TemplatePublic)
def get_template_route(
    caller: MayReadConfig, session: SessionDep, tenant: str, key: KeyPath, channel: Channel,
    locale: Locale,
) -> TemplatePublic:
    row = _row_or_404(session, tenant, key, channel, locale)
    return _public(row, compiled(row))


@router.delete("/templates/{key}/{channel}/{locale}", response_model=TemplatePublic)
def delete_template_route(
    caller: MayWriteTemplates, session: SessionDep, audit: Audit, tenant: str, key: KeyPath,
    channel: Channel, locale: Locale,
) -> TemplatePublic:
    row = _row_or_404(session, tenant, key, channel, locale)
    public = _public(row, compiled(row))
    delete_template(session, tenant=tenant, key=key, channel=channel, locale=locale.value)
    audit.record("template.delete", f"template:{key}/{channel}/{locale.value}", before=public)
    session.commit()
    return public


def _message(message: RenderedPush | RenderedEmail | RenderedText) -> dict[str, Any]:
    if isinstance(message, RenderedText):
        return {"text": message.text, "segments": message.count.segments,
                "encoding": str(message.count.encoding), "units": message.count.units}
    if isinstance(message, RenderedEmail):
        return {"subject": message.subject, "html": message.html, "text": message.text}
    return {"title": message.title, "body": message.body, "image_url": message.image_url,
            "deep_link": message.deep_link}


def _saved(session: SessionDep, tenant: str, data: PreviewRequest
           ) -> tuple[Template, str, int | None]:
    """The saved template a send to a customer with `data.locale` would use."""
    key, channel = data.key, data.channel
    if key is None or channel is None:  # the model's validator makes this unreachable
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "key and channel needed")
    found = load_template(session, tenant=tenant, key=key, channel=channel, locale=data.locale)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no template {key!r} for {channel} is saved")
    row = get_template(session, tenant=tenant, key=key, channel=channel,
                       locale=found.locale.value)
    return found, key, None if row is None else row.version


@router.post("/templates/preview", response_model=PreviewPublic,
             openapi_extra=body_limit(TEMPLATE_BODY_LIMIT))
def preview_route(
    caller: MayReadConfig, session: SessionDep, tenant: str, data: PreviewRequest,
) -> PreviewPublic:
    """The template rendered for the sample customer (with `context` laid over it), and
    warnings: SMS segments and encoding, texts that some screens cut. It changes nothing
    and shows no customer's data, so whoever reads templates may preview them."""
    key: str | None = None
    version: int | None = None
    try:
        if data.spec is not None:
            template = compile_template(data.spec)
        else:
            template, key, version = _saved(session, tenant, data)
        result = preview(template, data.context)
    except TemplateError as error:
        raise _template_error(error) from None
    except ValidationError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"invalid context: {describe_validation_error(error)}") from None
    return PreviewPublic(channel=template.channel, locale=template.locale, key=key,
                         version=version, message=_message(result.message),
                         warnings=list(result.warnings))
