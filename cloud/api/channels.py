"""What channels' providers and the shop's web page need from the API.

- `POST /receipts/{channel}`: a provider's delivery receipts (SMS), authenticated by the
  provider's signature (`cloud.channels.ReceiptChannel`).
- `GET /tenants/{tenant}/web-push/public-key` (app or admin): the tenant's VAPID key, for
  `PushManager.subscribe()` on the shop's page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from cloud.api.access import MayReadWebPushKey
from cloud.api.deps import NowDep, RawBody, SessionDep, SettingsDep
from cloud.api.errors import refusals
from cloud.channels import (
    InvalidReceiptError,
    ReceiptChannel,
    UnknownChannelError,
    adapter_for,
)
from cloud.channels.sms import NAME as SMS
from cloud.channels.web_push import tenant_vapid_keys
from cloud.delivery.receipts import store_receipt
from cloud.examples import example
from cloud.settings import Settings

#: Routes a provider calls, authenticated by its signature.
public = APIRouter(tags=["channels"])
#: Routes under /tenants/{tenant}.
router = APIRouter(tags=["channels"])


def _receipts_of(settings: Settings, channel: str) -> tuple[ReceiptChannel[Any], Any]:
    """The channel's adapter and settings; 404 unless it is configured and has receipts."""
    try:
        adapter = adapter_for(channel)
    except UnknownChannelError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no channel {channel!r}") from None
    channel_settings = settings.channel_settings(adapter)
    if not isinstance(adapter, ReceiptChannel) or channel_settings is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"{channel} is not configured or sends no receipts")
    return adapter, channel_settings


def _store(
    request: Request, session: SessionDep, now: NowDep, *, channel: str,
    adapter: ReceiptChannel[Any], channel_settings: Any, url: str, body: bytes,
) -> Response:
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    signature = request.headers.get(adapter.signature_header, "")
    try:
        receipt = adapter.parse_receipt(channel_settings, url=url, form=form,
                                        signature=signature)
    except InvalidReceiptError as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(error)) from None
    store_receipt(session, channel=channel, receipt=receipt, now=now)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@public.post("/receipts/{channel}", status_code=status.HTTP_204_NO_CONTENT,
             responses=refusals(403, 404))
def delivery_receipt(
    request: Request, session: SessionDep, now: NowDep, settings: SettingsDep, channel: str,
    body: RawBody,
) -> Response:
    """A provider's delivery receipt: sets delivered_at, or fails the message."""
    adapter, channel_settings = _receipts_of(settings, channel)
    # The URL the provider signed is the one it was given, not what a proxy forwards.
    url = adapter.receipt_url(channel_settings, settings.tracking.public_base_url)
    return _store(request, session, now, channel=channel, adapter=adapter,
                  channel_settings=channel_settings, url=url, body=body)


@public.post("/sms/receipts", status_code=status.HTTP_204_NO_CONTENT, deprecated=True,
             responses=refusals(403, 404))
def sms_receipt_at_its_former_address(
    request: Request, session: SessionDep, now: NowDep, settings: SettingsDep, body: RawBody,
) -> Response:
    """Where an earlier release had SMS receipts sent: texts it sent still report here."""
    adapter, channel_settings = _receipts_of(settings, SMS)
    configured = getattr(channel_settings, "status_callback_url", None)
    base = settings.tracking.public_base_url.rstrip("/")
    url = str(configured) if configured else f"{base}/sms/receipts"
    return _store(request, session, now, channel=SMS, adapter=adapter,
                  channel_settings=channel_settings, url=url, body=body)


class WebPushKey(BaseModel):
    model_config = ConfigDict(json_schema_extra=example({
        "application_server_key": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-"
                                  "Ts1XbjhazAkj7I99e8QcYP7DkM"}))

    #: base64url of the P-256 point: `applicationServerKey` for PushManager.subscribe().
    application_server_key: str


@router.get("/web-push/public-key", response_model=WebPushKey)
def web_push_public_key(
    caller: MayReadWebPushKey, session: SessionDep, now: NowDep, tenant: str
) -> WebPushKey:
    """The tenant's VAPID public key (made on first use and kept: subscriptions are
    bound to it)."""
    keys = tenant_vapid_keys(session, tenant=tenant, now=now)
    session.commit()
    return WebPushKey(application_server_key=keys.application_server_key)
