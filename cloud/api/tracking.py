"""Tracking endpoints: what customers' devices and mail programs call back.

Public, authenticated by what they carry:
- `GET /c/{token}`, `GET /c/{token}/{n}`: a tracked link (302 to where the message
  links; 404 for an unknown token). The token is the capability: 96 unguessable bits.
- `GET /o/{token}.gif`: an email's open pixel. `POST /o/{token}`: an open reported by the
  web push service worker or the app (no key: a service worker cannot keep a secret).
- `GET|POST /u/{token}`: unsubscribe; GET shows a confirmation button (link scanners
  fetch every URL of a mail and must not unsubscribe anyone), POST is RFC 8058's
  one-click unsubscribe that mailbox providers send.

An app reports opens with its key instead (`cloud.api.messages`).
"""

from __future__ import annotations

import html
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud.api.deps import NowDep, ScenarioWake, SessionDep
from cloud.api.errors import refusals
from cloud.bounds import DbDatetime
from cloud.channels import ContentForm, UnknownChannelError, adapter_for
from cloud.channels.dedupe import collapse_id
from cloud.channels.email import MAX_TRACKED_LINKS
from cloud.messages.models import Message
from cloud.tracking.events import (
    message_by_token,
    record_click,
    record_open,
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


def _by_token(session: SessionDep, token: str) -> Message:
    message = message_by_token(session, token=token)
    if message is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown link", headers=NO_STORE)
    return message


def _is_email(message: Message) -> bool:
    try:
        return adapter_for(message.channel).form is ContentForm.EMAIL
    except UnknownChannelError:
        return False


def _web_url(url: object) -> str | None:
    text = str(url) if url else ""
    parts = urlsplit(text)
    return text if parts.scheme in ("http", "https") and parts.hostname else None


router = APIRouter(tags=["tracking"])


@router.get("/c/{token}", status_code=status.HTTP_302_FOUND, response_class=RedirectResponse,
            responses=refusals(404))
def click(session: SessionDep, now: NowDep, wake: ScenarioWake, token: str) -> RedirectResponse:
    """A tracked link: records the click (the first one counts) and redirects."""
    message = _by_token(session, token)
    target = _web_url(message.target_url)
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this message links nowhere")
    record_click(session, message=message, now=now)
    session.commit()
    wake()
    return RedirectResponse(target, status.HTTP_302_FOUND, headers=NO_STORE)


@router.get(
    "/c/{token}/{index}", status_code=status.HTTP_302_FOUND, response_class=RedirectResponse,
    responses=refusals(404),
)
def click_email_link(
    session: SessionDep, now: NowDep, wake: ScenarioWake, token: str,
    index: Annotated[int, Path(ge=0, le=MAX_TRACKED_LINKS)],
) -> RedirectResponse:
    """The `index`-th link of an email, as stored when it was queued."""
    message = _by_token(session, token)
    links = message.content.get("links") or []
    target = _web_url(links[index]) if 0 <= index < len(links) else None
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown link")
    record_click(session, message=message, now=now)
    session.commit()
    wake()
    return RedirectResponse(target, status.HTTP_302_FOUND, headers=NO_STORE)


@router.get("/o/{token}.gif", response_class=Response, responses=refusals(404))
def open_pixel(session: SessionDep, now: NowDep, wake: ScenarioWake, token: str) -> Response:
    """An email's open pixel. (Mail privacy proxies load every pixel when the mail
    arrives, so email opens are an upper bound.)"""
    message = _by_token(session, token)
    record_open(session, message=message, now=now)
    session.commit()
    wake()
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


class OpenReport(BaseModel):
    """What the web push service worker posts; both fields are optional."""

    model_config = ConfigDict(extra="forbid")

    #: The notification's tag (the message's dedupe key); checked when given.
    tag: str | None = Field(default=None, max_length=64)
    opened_at: DbDatetime | None = None


async def _report_body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_REPORT_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "an open report is small")
    return body


@router.post("/o/{token}", status_code=status.HTTP_204_NO_CONTENT, responses=refusals(404))
def open_report(
    session: SessionDep, now: NowDep, wake: ScenarioWake, token: str,
    body: Annotated[bytes, Depends(_report_body)],
) -> Response:
    """An open reported by the web push service worker (or the app) for a message.

    Read as JSON whatever its Content-Type: the service worker sends it as a CORS
    "simple" request (text/plain), which needs no preflight from the shop's origin.
    """
    message = _by_token(session, token)
    try:
        report = OpenReport.model_validate_json(body if body.strip() else b"{}")
    except ValidationError as error:
        reason = ("body is not JSON" if any(item["type"] == "json_invalid"
                                            for item in error.errors(include_input=False))
                  else describe_validation_error(error))
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid open report: {reason}"
        ) from None
    if report.tag is not None and report.tag != collapse_id(message.idempotency_key):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown link")
    record_open(session, message=message, now=now, opened_at=report.opened_at)
    session.commit()
    wake()
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=NO_STORE)


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
</head><body><h1>{title}</h1>{body}</body></html>"""


def _page_example(title: str, body: str) -> dict[int | str, dict[str, Any]]:
    """A page's answer as the OpenAPI document shows it."""
    return {200: {"content": {"text/html": {"example": _PAGE.format(title=title, body=body)}}}}


UNSUBSCRIBE_PAGE = _page_example(
    "Unsubscribe", '<form method="post"><p>Stop receiving these messages?</p>'
    '<button type="submit">Unsubscribe</button></form>')
UNSUBSCRIBED_PAGE = _page_example("Unsubscribed", "<p>You will not get these any more.</p>")


@router.get("/u/{token}", response_class=HTMLResponse,
            responses={**UNSUBSCRIBE_PAGE, **refusals(404)})
def unsubscribe_page(session: SessionDep, token: str) -> HTMLResponse:
    message = _by_token(session, token)
    channel = "emails" if _is_email(message) else "messages"
    return HTMLResponse(
        _PAGE.format(
            title="Unsubscribe",
            # No action: the form posts back to this very URL, whatever prefix it has.
            body=f'<form method="post"><p>Stop receiving these {html.escape(channel)}?'
            '</p><button type="submit">Unsubscribe</button></form>',
        ),
        headers=NO_STORE,
    )


@router.post("/u/{token}", response_class=HTMLResponse,
             responses={**UNSUBSCRIBED_PAGE, **refusals(404)})
def unsubscribe(session: SessionDep, now: NowDep, token: str) -> HTMLResponse:
    """Withdraw consent for the channel this message came on (RFC 8058 one-click)."""
    message = _by_token(session, token)
    record_unsubscribe(session, message=message, now=now)
    session.commit()
    return HTMLResponse(
        _PAGE.format(title="Unsubscribed", body="<p>You will not get these any more.</p>"),
        headers=NO_STORE,
    )
