"""Web push: notifications to the browsers that subscribed on the shop's web site.

Addresses are the push subscriptions the shop's page registered (`DeviceKind.WEB_PUSH`:
an endpoint at the browser vendor's push service and the keys to encrypt to). A push
service's 201 is the closest to a delivery receipt a sender gets, so an accepted web
push counts as delivered. A click opens the tracked link (the service worker under
`web/` reports the open first).

Each tenant signs with its own VAPID key pair, generated on first use and kept in the
database: browsers bind a subscription to the public key given at subscribe time, so the
key must outlive every subscription, and every worker and API process reads the same one
(a key file would have to be copied to every machine). Two processes creating it at the
same moment agree on the first one stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, Table
from sqlmodel import Field as TableField
from sqlmodel import Session, SQLModel

from cloud.channels.base import (
    CapDefault,
    ChannelAdapter,
    ContentForm,
    DeviceAddress,
    Outbound,
    Recipient,
    SenderEnvironment,
    TemplateMeasure,
)
from cloud.channels.inflight import InflightLimiter, LimitSettings
from cloud.channels.results import SendResult
from cloud.channels.retry import DEFAULT_RETRY, RetryPolicy
from cloud.channels.vapid import VapidKeys, generate_vapid_keys, vapid_keys_from_pem
from cloud.channels.web_push_service import (
    CONNECT_TIMEOUT_S,
    DEFAULT_WORKERS,
    WebPushMessage,
    WebPushSender,
    WebPushSubscription,
)
from cloud.db import UtcDateTime, dialect_insert, session_scope
from cloud.outbound import OutboundPolicy

NAME = "web_push"
#: RFC 8292: the VAPID subject is a mailto: or an https: URL.
VAPID_SUBJECT_PATTERN = r"^(mailto:[^@\s]+@[^@\s]+|https://\S+)$"


class WebPushKey(SQLModel, table=True):
    __tablename__ = "web_push_key"

    tenant: str = TableField(primary_key=True, max_length=64)
    private_pem: str = TableField(max_length=1000)
    application_server_key: str = TableField(max_length=100)
    created_at: datetime = TableField(sa_type=UtcDateTime)


KEY_TABLE: Table = SQLModel.metadata.tables[WebPushKey.__tablename__]


def tenant_vapid_keys(session: Session, *, tenant: str, now: datetime) -> VapidKeys:
    """The tenant's keys, generated and stored on first use (in the caller's transaction)."""
    found = session.get(WebPushKey, tenant)
    if found is None:
        keys = generate_vapid_keys()
        session.connection().execute(
            dialect_insert(session, KEY_TABLE)
            .values(
                tenant=tenant, private_pem=keys.private_pem.decode(),
                application_server_key=keys.application_server_key, created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["tenant"])
        )
        found = session.get(WebPushKey, tenant)
        assert found is not None
    return vapid_keys_from_pem(found.private_pem)


class WebPushSettings(BaseModel):
    """Web push is on once `subject` is set; keys are made per tenant and kept in the
    database."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: Annotated[str, Field(pattern=VAPID_SUBJECT_PATTERN)] = Field(
        description="The VAPID subject (`mailto:` or `https:`) push services use to reach "
        "the sender's operator.")
    timeout_s: float = Field(
        default=10.0, gt=0,
        description="The wait for a push service's answer once a push is out (not the wait "
        "for a slot).")
    connect_timeout_s: float = Field(
        default=CONNECT_TIMEOUT_S, gt=0,
        description="How long connecting may take (nothing is sent before it is done).")


class TenantWebPushSenders:
    """One WebPushSender per tenant, with the tenant's VAPID key from the database
    (generated and stored on first use, outside any transaction of the caller's). The
    tenants' pushes go to the same few push services: their senders share one in-flight
    limiter."""

    def __init__(
        self, engine: Engine, *, subject: str, now: Callable[[], datetime],
        policy: OutboundPolicy, retry: RetryPolicy = DEFAULT_RETRY, timeout_s: float = 10.0,
        connect_timeout_s: float = CONNECT_TIMEOUT_S, limits: LimitSettings | None = None,
    ) -> None:
        """`limits`: the shared limiter's settings (by default, for `timeout_s`)."""
        self._engine = engine
        self._policy = policy
        self._subject = subject
        self._now = now
        self._retry = retry
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._limiter = InflightLimiter(
            limits or LimitSettings.for_timeout(timeout_s, maximum=DEFAULT_WORKERS)
        )
        self._senders: dict[str, WebPushSender] = {}

    def sender_for(self, tenant: str) -> WebPushSender:
        sender = self._senders.get(tenant)
        if sender is None:
            with session_scope(self._engine) as session:
                keys = tenant_vapid_keys(session, tenant=tenant, now=self._now())
                session.commit()
            sender = WebPushSender(
                keys, subject=self._subject, policy=self._policy, timeout_s=self._timeout_s,
                connect_timeout_s=self._connect_timeout_s, retry=self._retry, tenant=tenant,
                limiter=self._limiter,
            )
            self._senders[tenant] = sender
        return sender

    def deliver(self, tenant: str, payloads: Sequence[WebPushMessage]) -> list[SendResult]:
        return self.sender_for(tenant).deliver(payloads)

    def close(self) -> None:
        for sender in self._senders.values():
            sender.close()
        self._senders.clear()


class WebPushChannel(ChannelAdapter[WebPushSettings, WebPushMessage]):
    name = NAME
    consent = NAME
    provider = "webpush"
    form = ContentForm.NOTIFICATION
    measures = frozenset({TemplateMeasure.NOTIFICATION_CHARS, TemplateMeasure.WEB_PUSH_BYTES})
    address = DeviceAddress("web_push")
    settings_model = WebPushSettings
    unconfigured = ("no Web Push subject (VAPID): pushes to browsers that subscribed on the "
                    "web shop are not sent")
    acceptance_is_delivery = True
    default_cap = CapDefault(max=3, per=timedelta(days=1))

    def payload(self, outbound: Outbound, recipient: Recipient) -> WebPushMessage | None:
        p256dh, auth = recipient.keys.get("p256dh"), recipient.keys.get("auth")
        if not recipient.address or not p256dh or not auth:
            return None
        links = outbound.links
        return WebPushMessage(
            subscription=WebPushSubscription(endpoint=recipient.address, p256dh=p256dh,
                                             auth=auth),
            title=outbound.part("title", outbound.title),
            body=outbound.part("body", outbound.body),
            idempotency_key=outbound.idempotency_key,
            url=(links.click if links is not None else None) or outbound.content.get("deep_link"),
            image_url=outbound.content.get("image_url"), data=outbound.data(),
            ttl_s=outbound.ttl_s, open_url=links.open_report if links is not None else None,
        )

    def open_sender(
        self, settings: WebPushSettings, environment: SenderEnvironment
    ) -> TenantWebPushSenders:
        return TenantWebPushSenders(
            environment.engine, subject=settings.subject, now=environment.now,
            policy=environment.outbound, timeout_s=settings.timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
        )
