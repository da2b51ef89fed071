"""Tracking endpoints: what customers' devices and the providers call back.

Public, authenticated by what they carry:
- `GET /c/{token}`, `GET /c/{token}/{n}`: a tracked link (302 to where the message
  links; 404 for an unknown token). The token is the capability: 96 unguessable bits.
- `GET /o/{token}.gif`: an email's open pixel. `POST /o/{token}`: an open reported by the
  web push service worker or the app (no key: a service worker cannot keep a secret).
- `GET|POST /u/{token}`: unsubscribe; GET shows a confirmation button (link scanners
  fetch every URL of a mail and must not unsubscribe anyone), POST is RFC 8058's
  one-click unsubscribe that mailbox providers send.
- `POST /receipts/{channel}`: a provider's delivery receipts (SMS), checked by its
  signature.
Under /tenants/{tenant}, with an API key:
- `POST /messages/{id}/opened` (app or admin), `GET /messages/{id}/attempts` (admin),
- `GET /web-push/public-key` (app or admin): the VAPID key for PushManager.subscribe,
- `GET /analytics/funnel` (admin).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import col, select

from cloud.auth.dependencies import AppOrAdmin, TenantAdmin
from cloud.channels import (
    InvalidReceiptError,
    ReceiptChannel,
    UnknownChannelError,
    adapter_for,
    channel_names,
)
from cloud.channels.dedupe import collapse_id
from cloud.channels.web_push import tenant_vapid_keys
from cloud.db import SessionDep
from cloud.delivery.receipts import store_receipt
from cloud.messages.models import Message, MessageAttempt, MessageAttemptPublic
from cloud.request_context import known_tenant, request_now, triggers_recorded
from cloud.scenarios.funnel import FunnelRow, funnel
from cloud.settings import Settings
from cloud.tracking.events import (
    message_by_token,
    record_click,
    record_open,
    record_open_by_id,
    record_unsubscribe,
)
from shared.errors import describe_validation_error

#: The smallest transparent GIF (43 bytes).
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b"
)
#: Tracking answers must never be cached: a cached pixel or redirect records nothing.
NO_STORE = {"Cache-Control": "no-store, max-age=0", "Referrer-Policy": "no-referrer"}
#: An open report is tiny; anything bigger is not one.
MAX_REPORT_BYTES = 2048
SIGNATURE_HEADER = "X-Twilio-Signature"


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _by_token(session: SessionDep, token: str) -> Message:
    message = message_by_token(session, token=token)
    if message is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown link", headers=NO_STORE)
    return message


def _web_url(url: object) -> str | None:
    text = str(url) if url else ""
    parts = urlsplit(text)
    return text if parts.scheme in ("http", "https") and parts.hostname else None


public = APIRouter(tags=["tracking"])


@public.get("/c/{token}", status_code=status.HTTP_302_FOUND, response_class=RedirectResponse)
def click(request: Request, session: SessionDep, token: str) -> RedirectResponse:
    """A tracked link: records the click (the first one counts) and redirects."""
    message = _by_token(session, token)
    target = _web_url(message.target_url)
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this message links nowhere")
    record_click(session, message=message, now=request_now(request))
    session.commit()
    triggers_recorded(request)
    return RedirectResponse(target, status.HTTP_302_FOUND, headers=NO_STORE)


@public.get(
    "/c/{token}/{index}", status_code=status.HTTP_302_FOUND, response_class=RedirectResponse
)
def click_email_link(
    request: Request, session: SessionDep, token: str, index: int
) -> RedirectResponse:
    """The `index`-th link of an email, as stored when it was queued."""
    message = _by_token(session, token)
    links = message.content.get("links") or []
    target = _web_url(links[index]) if 0 <= index < len(links) else None
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown link")
    record_click(session, message=message, now=request_now(request))
    session.commit()
    triggers_recorded(request)
    return RedirectResponse(target, status.HTTP_302_FOUND, headers=NO_STORE)


@public.get("/o/{token}.gif", response_class=Response)
def open_pixel(request: Request, session: SessionDep, token: str) -> Response:
    """An email's open pixel. (Mail privacy proxies load every pixel when the mail
    arrives, so email opens are an upper bound.)"""
    message = _by_token(session, token)
    record_open(session, message=message, now=request_now(request))
    session.commit()
    triggers_recorded(request)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


class OpenReport(BaseModel):
    """What the web push service worker posts; both fields are optional."""

    model_config = ConfigDict(extra="forbid")

    #: The notification's tag (the message's dedupe key); checked when given.
    tag: str | None = Field(default=None, max_length=64)
    opened_at: AwareDatetime | None = None


async def _report_body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_REPORT_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "an open report is small")
    return body


@public.post("/o/{token}", status_code=status.HTTP_204_NO_CONTENT)
def open_report(
    request: Request, session: SessionDep, token: str,
    body: Annotated[bytes, Depends(_report_body)],
) -> Response:
    """An open reported by the web push service worker (or the app) for a message.

    Read as JSON whatever its Content-Type: the service worker sends it as a CORS
    "simple" request (text/plain), which needs no preflight from the shop's origin.
    """
    message = _by_token(session, token)
    try:
        report = OpenReport.model_validate(json.loads(body) if body.strip() else {})
    except (ValueError, ValidationError) as error:
        reason = (
            describe_validation_error(error) if isinstance(error, ValidationError)
            else "body is not JSON"
        )
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid open report: {reason}"
        ) from None
    if report.tag is not None and report.tag != collapse_id(message.idempotency_key):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown link")
    record_open(session, message=message, now=request_now(request), opened_at=report.opened_at)
    session.commit()
    triggers_recorded(request)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=NO_STORE)


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
</head><body><h1>{title}</h1>{body}</body></html>"""


@public.get("/u/{token}", response_class=HTMLResponse)
def unsubscribe_page(session: SessionDep, token: str) -> HTMLResponse:
    message = _by_token(session, token)
    channel = "emails" if message.channel == "email" else "messages"
    return HTMLResponse(
        _PAGE.format(
            title="Unsubscribe",
            # No action: the form posts back to this very URL, whatever prefix it has.
            body=f'<form method="post"><p>Stop receiving these {html.escape(channel)}?'
            '</p><button type="submit">Unsubscribe</button></form>',
        ),
        headers=NO_STORE,
    )


@public.post("/u/{token}", response_class=HTMLResponse)
def unsubscribe(request: Request, session: SessionDep, token: str) -> HTMLResponse:
    """Withdraw consent for the channel this message came on (RFC 8058 one-click)."""
    message = _by_token(session, token)
    record_unsubscribe(session, message=message, now=request_now(request))
    session.commit()
    return HTMLResponse(
        _PAGE.format(title="Unsubscribed", body="<p>You will not get these any more.</p>"),
        headers=NO_STORE,
    )


async def _raw_body(request: Request) -> bytes:
    return await request.body()


def _receipt(
    request: Request, session: SessionDep, channel: str, body: bytes, signature: str | None,
    *, url: Callable[[Any, str], str],
) -> Response:
    settings = _settings(request)
    try:
        adapter = adapter_for(channel)
    except UnknownChannelError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no channel {channel!r}") from None
    channel_settings = settings.channel_settings(adapter)
    if not isinstance(adapter, ReceiptChannel) or channel_settings is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"{channel} is not configured or sends no receipts")
    # The URL the provider signed is the one it was given, not what a proxy forwards.
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    try:
        receipt = adapter.parse_receipt(
            channel_settings, url=url(channel_settings, settings.tracking.public_base_url),
            form=form, signature=signature or "",
        )
    except InvalidReceiptError as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(error)) from None
    store_receipt(session, channel=channel, receipt=receipt, now=request_now(request))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@public.post("/receipts/{channel}", status_code=status.HTTP_204_NO_CONTENT)
def delivery_receipt(
    request: Request, session: SessionDep, channel: str,
    body: Annotated[bytes, Depends(_raw_body)],
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
) -> Response:
    """A provider's delivery receipt (SMS): sets delivered_at, or fails the message."""
    adapter = adapter_for(channel) if channel in channel_names() else None

    def url(channel_settings: Any, base: str) -> str:
        assert isinstance(adapter, ReceiptChannel)
        return adapter.receipt_url(channel_settings, base)

    return _receipt(request, session, channel, body, signature, url=url)


@public.post("/sms/receipts", status_code=status.HTTP_204_NO_CONTENT, deprecated=True)
def sms_receipt_before_receipts_had_a_channel(
    request: Request, session: SessionDep, body: Annotated[bytes, Depends(_raw_body)],
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
) -> Response:
    """Where an earlier release had SMS receipts sent (texts it sent still report here)."""

    def url(channel_settings: Any, base: str) -> str:
        configured = getattr(channel_settings, "status_callback_url", None)
        return str(configured) if configured else f"{base.rstrip('/')}/sms/receipts"

    return _receipt(request, session, "sms", body, signature, url=url)


router = APIRouter(prefix="/tenants/{tenant}", tags=["tracking"])


class OpenedBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    opened_at: AwareDatetime | None = Field(
        default=None, description="when the customer opened it; defaults to now"
    )


class MessageOpened(BaseModel):
    message_id: int
    opened_at: datetime | None


@router.post("/messages/{message_id}/opened", response_model=MessageOpened)
def message_opened(
    request: Request, session: SessionDep, tenant: str, message_id: int, caller: AppOrAdmin,
    body: OpenedBody | None = None,
) -> MessageOpened:
    """The app reports that the customer opened a push (the first open counts)."""
    known_tenant(request, tenant)
    message = record_open_by_id(
        session, tenant=tenant, message_id=message_id, now=request_now(request),
        opened_at=body.opened_at if body else None,
    )
    if message is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"message {message_id} of tenant {tenant!r} not found"
        )
    session.commit()
    triggers_recorded(request)
    return MessageOpened(message_id=message_id, opened_at=message.opened_at)


@router.get("/messages/{message_id}/attempts", response_model=list[MessageAttemptPublic])
def message_attempts(
    request: Request, session: SessionDep, tenant: str, message_id: int, caller: TenantAdmin
) -> list[MessageAttemptPublic]:
    """Every provider call made for a message: when, where, what came back, how long."""
    known_tenant(request, tenant)
    message = session.get(Message, message_id)
    if message is None or message.tenant != tenant:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"message {message_id} of tenant {tenant!r} not found"
        )
    rows = session.exec(
        select(MessageAttempt).where(MessageAttempt.message_id == message_id)
        .order_by(col(MessageAttempt.id))
    ).all()
    return [MessageAttemptPublic.model_validate(row) for row in rows]


class WebPushKey(BaseModel):
    #: base64url of the P-256 point: `applicationServerKey` for PushManager.subscribe().
    application_server_key: str


@router.get("/web-push/public-key", response_model=WebPushKey)
def web_push_public_key(
    request: Request, session: SessionDep, tenant: str, caller: AppOrAdmin
) -> WebPushKey:
    """The tenant's VAPID public key (made on first use and kept: subscriptions are
    bound to it)."""
    known_tenant(request, tenant)
    keys = tenant_vapid_keys(session, tenant=tenant, now=request_now(request))
    session.commit()
    return WebPushKey(application_server_key=keys.application_server_key)


@router.get("/analytics/funnel", response_model=list[FunnelRow])
def funnel_report(
    request: Request, session: SessionDep, tenant: str, caller: TenantAdmin,
    since: Annotated[AwareDatetime, Query(description="messages queued at or after")],
    until: Annotated[AwareDatetime, Query(description="messages queued before")],
    scenario: Annotated[str | None, Query(max_length=64)] = None,
) -> list[FunnelRow]:
    """Per scenario, step and variant: queued, sent, delivered, opened, clicked,
    converted, failed, suppressed, expired, still pending or held."""
    known_tenant(request, tenant)
    try:
        return funnel(session, tenant=tenant, since=since, until=until, scenario=scenario)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
