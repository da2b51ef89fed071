"""The delivery worker: sends what the queue holds, through every channel, and records it.

One round (`run_once`) is two transactions with the sending between them. The first
expires what is past its `expires_at`, claims up to `batch_size` due messages and reads
what checking and addressing them needs (committed before anything is sent, see
`cloud.messages.queue`). Then, without a transaction, the round re-checks
each customer's consent for the channel (`cloud.customers.consent`: marketing withdrawn
since the decision, or a consent request answered "no" since it was made: suppressed),
resolves the addresses as they are now (active FCM devices, web push subscriptions, the
customer's email and phone; none: failed 'no_address') and sends grouped by channel (FCM in
calls of at most 500). The second transaction records one `message_attempt` per
address and provider call, deactivates dead tokens and subscriptions, and settles each
message: sent, retried later (transient errors back off exponentially with jitter,
never sooner than Retry-After), or failed for good; the messages that were not sent
(expired, suppressed, no address) are settled in it too.

Webhooks to the shop (`cloud.webhooks.outbound`) have rounds of their own, run beside the
message rounds by the same `run` loop and woken by the same `wake`: a shop endpoint that
hangs delays neither messages nor anything else.

Delivery receipts: FCM has none (a 200 means Google accepted the message, not that a
phone showed it), so FCM pushes stay "sent"; a web push service's 201 is the closest a
sender gets and counts as delivered; SMS receipts arrive later by webhook
(`cloud.delivery.receipts`); SMTP acceptance is "sent".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol, TypeVar

from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, col, select
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from cloud.bulk import insert_rows, one_of
from cloud.channels.fcm import MAX_BATCH, MAX_TTL_S, FcmSender
from cloud.channels.push import PushMessage, PushSender, SendResult
from cloud.channels.retry import DEFAULT_RETRY, RetryPolicy
from cloud.channels.sms import SmsMessage, SmsSender, TwilioSms
from cloud.channels.smtp import EmailMessage, EmailSender
from cloud.channels.web_push import tenant_vapid_keys
from cloud.channels.web_push_service import WebPushMessage, WebPushSender, WebPushSubscription
from cloud.customers.consent import Answer, latest_answers, refusal
from cloud.customers.crud import deactivate_device
from cloud.customers.models import ConsentChannel, Customer, Device, DeviceKind
from cloud.db import (
    DATABASE_WAIT_S,
    is_transient,
    session_scope,
    utc_now,
    wait_for_database,
)
from cloud.delivery.receipts import apply_kept_receipts, apply_stored_receipt
from cloud.leases import retry_at
from cloud.messages.content import tracked_html
from cloud.messages.models import (
    AttemptOutcome,
    Message,
    MessageAttempt,
    MessageChannel,
    MessageStatus,
)
from cloud.messages.queue import (
    LEASE,
    MAX_ATTEMPTS,
    Accepted,
    Claim,
    claim_due,
    expire_due,
    mark_final,
    mark_retry,
    mark_sent,
    mark_sent_many,
)
from cloud.messages.tokens import open_report_url, tracked_link, unsubscribe_url
from cloud.metrics import DATABASE_RETRIES, MESSAGES_SENT
from cloud.pacing import Every
from cloud.settings import EMAIL_NEEDS_HTTPS, Settings, is_https
from cloud.webhooks.outbound import WebhookSender

log = logging.getLogger(__name__)

ATTEMPT_TABLE = SQLModel.metadata.tables[MessageAttempt.__tablename__]

#: A push nobody set an expiry for is still worth showing within a day, not after.
DEFAULT_TTL = timedelta(hours=24)
#: Push services and FCM need a TTL of at least a little: a message about to expire
#: still gets this long.
MIN_TTL = timedelta(minutes=1)
#: Pause after an unexpected failure of a whole round (the database went away).
ERROR_PAUSE_S = 5.0

M = TypeVar("M", contravariant=True)


class Deliverer(Protocol[M]):
    def deliver(self, messages: Sequence[M]) -> list[SendResult]:
        """One result per message, in order; never raises for a per-address error."""
        ...


class WebPushDirectory(Protocol):
    def sender_for(self, tenant: str) -> Deliverer[WebPushMessage] | None:
        """The tenant's web push sender (its own VAPID key), or None when web push is off."""
        ...


class TenantWebPushSenders:
    """One WebPushSender per tenant, with the tenant's VAPID key from the database
    (generated and stored on first use). Thread-safe enough for one worker thread."""

    def __init__(
        self, engine: Engine, *, subject: str, now: Callable[[], datetime] = utc_now,
        retry: RetryPolicy = DEFAULT_RETRY, timeout_s: float = 10.0,
    ) -> None:
        self._engine = engine
        self._subject = subject
        self._now = now
        self._retry = retry
        self._timeout_s = timeout_s
        self._senders: dict[str, WebPushSender] = {}

    def sender_for(self, tenant: str) -> WebPushSender:
        sender = self._senders.get(tenant)
        if sender is None:
            with session_scope(self._engine) as session:
                keys = tenant_vapid_keys(session, tenant=tenant, now=self._now())
                session.commit()
            sender = WebPushSender(
                keys, subject=self._subject, timeout_s=self._timeout_s, retry=self._retry
            )
            self._senders[tenant] = sender
        return sender

    def close(self) -> None:
        for sender in self._senders.values():
            sender.close()
        self._senders.clear()


@dataclass
class DeliveryChannels:
    """The senders the worker uses; a channel left None is not configured (its messages
    wait, retried every `CONFIGURATION_BACKOFF`, until it is or they expire)."""

    push: PushSender | None = None
    web_push: WebPushDirectory | None = None
    email: Deliverer[EmailMessage] | None = None
    sms: Deliverer[SmsMessage] | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, engine: Engine, push: PushSender | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> DeliveryChannels:
        """Senders for every configured channel; `push` reuses an FCM sender the caller
        already has (otherwise one is made from `settings.fcm`). Close when done."""
        channels = cls(push=push)
        if push is None and settings.fcm is not None:
            fcm = FcmSender(settings.fcm)
            channels.push = fcm
            channels._closers.append(fcm.close)
        delivery = settings.delivery
        if delivery.web_push_subject is not None:
            web = TenantWebPushSenders(engine, subject=delivery.web_push_subject, now=now)
            channels.web_push = web
            channels._closers.append(web.close)
        if delivery.smtp is not None:
            channels.email = EmailSender(delivery.smtp)
        if delivery.sms is not None:
            sms_settings = delivery.sms
            if sms_settings.status_callback_url is None:
                # Receipts come back to this API unless another address is configured.
                base = settings.tracking.public_base_url.rstrip("/")
                sms_settings = sms_settings.model_copy(
                    update={"status_callback_url": f"{base}/sms/receipts"}
                )
            provider = TwilioSms(sms_settings)
            channels.sms = SmsSender(provider)
            channels._closers.append(provider.close)
        return channels

    def close(self) -> None:
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()

    def __enter__(self) -> DeliveryChannels:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


#: The provider name recorded on attempts, per channel.
PROVIDERS = {
    MessageChannel.PUSH: "fcm",
    MessageChannel.WEB_PUSH: "webpush",
    MessageChannel.EMAIL: "smtp",
    MessageChannel.SMS: "sms",
}
_Payload = PushMessage | WebPushMessage | EmailMessage | SmsMessage
#: Channels that go to the customer's registered devices (tokens, subscriptions)...
_TO_DEVICES = frozenset({MessageChannel.PUSH.value, MessageChannel.WEB_PUSH.value})
#: ...and channels addressed from the customer's own row (email address, phone).
_ADDRESSED = frozenset({MessageChannel.EMAIL.value, MessageChannel.SMS.value})


@dataclass(frozen=True, slots=True)
class _Item:
    """One provider call's worth for one address of one claimed message."""

    claim: Claim
    channel: MessageChannel
    tenant: str
    device_id: int | None
    payload: _Payload


#: An outcome to write in the round's record transaction.
_Settlement = Callable[[Session], None]


@dataclass(frozen=True, slots=True)
class _Known:
    """What the send-time checks and addresses of a round's messages read, in the
    transaction that claims them: only what their channels need (devices for pushes,
    the customer's row for email and SMS addresses)."""

    answers: dict[tuple[int, ConsentChannel], Answer]
    customers: dict[int, Customer]
    devices: dict[tuple[int, DeviceKind], list[Device]]

    @classmethod
    def load(cls, session: Session, messages: Collection[Message]) -> _Known:
        if not messages:
            return cls({}, {}, {})
        return cls(
            answers=latest_answers(session, sorted({m.customer_id for m in messages})),
            customers=_customers(session, sorted({
                m.customer_id for m in messages if m.channel in _ADDRESSED
            })),
            devices=_devices(session, sorted({
                m.customer_id for m in messages if m.channel in _TO_DEVICES
            })),
        )


@dataclass(frozen=True, slots=True)
class _Sent:
    item: _Item
    result: SendResult
    latency_ms: int


def classify(result: SendResult) -> AttemptOutcome:
    if result.ok:
        return AttemptOutcome.SENT
    if result.address_dead:
        return AttemptOutcome.DEAD_ADDRESS
    if result.permanent:
        return AttemptOutcome.PERMANENT
    if result.transient:
        return AttemptOutcome.TRANSIENT
    return AttemptOutcome.CONFIGURATION


class _NotConfiguredError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class _UnsendableError(Exception):
    """This message can never be sent as stored (retrying cannot help): failed for good."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class DeliveryWorker:
    """Sends due messages until stopped. Several may run at once, in one process or many.

        channels = DeliveryChannels.from_settings(settings, engine=engine)
        worker = DeliveryWorker(engine=engine, channels=channels, settings=settings)
        sent = worker.run_once(now)          # one round of messages;
        posted = worker.webhooks.run_once(now)   # one round of webhooks; or
        await worker.run(stop)               # rounds of both until `stop` is set
    """

    def __init__(
        self,
        *,
        engine: Engine,
        channels: DeliveryChannels,
        settings: Settings,
        now: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        lease: timedelta = LEASE,
    ) -> None:
        """Raises ValueError when email is configured but the public base URL is not https:
        no email could be sent (see `EMAIL_NEEDS_HTTPS`), so the worker refuses to start
        rather than fail every email at send time. `Settings` refuses the same
        configuration; this covers an email sender handed in directly."""
        if channels.email is not None and not is_https(settings.tracking.public_base_url):
            raise ValueError(EMAIL_NEEDS_HTTPS)
        self._engine = engine
        self._channels = channels
        self._settings = settings
        self._base = settings.tracking.public_base_url
        self._now = now
        self._rng = rng or random.Random()
        self._lease = lease
        self.batch_size = settings.delivery.batch_size
        #: Posts the webhooks scenario steps queued; its rounds run beside the messages'.
        self.webhooks = WebhookSender(
            engine=engine, secrets=settings.webhook_secrets_for,
            timeout_s=settings.scenarios.webhook_timeout_s,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeups: tuple[asyncio.Event, ...] = ()
        self._sweeps = Every(settings.delivery.poll_interval_s)
        #: Outcomes of the open transaction, counted when it commits (`_transaction`).
        self._tallies: list[tuple[MessageChannel, str]] = []

    def wake(self) -> None:
        """Run a round now rather than at the next poll (new messages or webhooks were
        queued); callable from any thread."""
        if self._loop is not None:
            for wakeup in self._wakeups:
                self._loop.call_soon_threadsafe(wakeup.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds of messages and, beside them, rounds of webhooks until `stop` is set:
        each at once again while its round was full, else after
        `delivery.poll_interval_s` or a `wake`."""
        await asyncio.to_thread(wait_for_database, self._engine)
        messages, webhooks = asyncio.Event(), asyncio.Event()
        self._loop, self._wakeups = asyncio.get_running_loop(), (messages, webhooks)
        await asyncio.gather(
            self._rounds(stop, messages, self._paced_round, self.batch_size, "delivery"),
            self._rounds(stop, webhooks, self.webhooks.run_once, self.webhooks.batch_size,
                         "webhook"),
        )

    async def _rounds(
        self, stop: asyncio.Event, wakeup: asyncio.Event, one_round: Callable[[datetime], int],
        full: int, name: str,
    ) -> None:
        pause = self._settings.delivery.poll_interval_s
        while not stop.is_set():
            wakeup.clear()  # before the round: a wake during it means "go again"
            try:
                handled = await asyncio.to_thread(one_round, self._now())
            except Exception:
                log.exception("%s round failed; trying again shortly", name)
                handled, wait = 0, ERROR_PAUSE_S
            else:
                wait = pause
            if handled >= full:
                continue
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())}
            _done, pending = await asyncio.wait(
                waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()

    def _paced_round(self, now: datetime) -> int:
        """A round of `run`: it sweeps at most once per poll interval. Woken for every
        batch the scenario stage commits, rounds come every few milliseconds under load,
        and a sweep each time would cost more than it finds (a message expiring meanwhile
        is still caught when claimed)."""
        return self.run_once(now, sweep=self._sweeps.due())

    def run_once(self, now: datetime, *, sweep: bool = True) -> int:
        """One round at `now`; returns how many messages it claimed. With `sweep`, first
        expire what lapsed unsent and apply SMS receipts that arrived before their
        message was recorded."""
        with self._transaction() as session:
            expired = expire_due(session, now=now) if sweep else 0
            claimed = claim_due(session, now=now, limit=self.batch_size, lease=self._lease)
            known = _Known.load(session, claimed.values())
            if sweep:
                apply_kept_receipts(session, now=now)
        if expired:
            MESSAGES_SENT.labels(channel="any", outcome="expired").inc(expired)
        if not claimed:
            return 0
        items, unsent = self._prepare(claimed, known, now=now)
        sent = self._send(items)
        self._record_until_stored(sent, unsent, claimed, now=now)
        return len(claimed)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Session]:
        """A session committed on the way out; the outcomes tallied in it are counted
        only once it has committed (a transaction tried again counts them once)."""
        self._tallies.clear()
        with session_scope(self._engine) as session:
            yield session
            session.commit()
        for (channel, outcome), count in Counter(self._tallies).items():
            MESSAGES_SENT.labels(channel=channel.value, outcome=outcome).inc(count)
        self._tallies.clear()

    def _tally(self, channel: MessageChannel, outcome: str) -> None:
        self._tallies.append((channel, outcome))

    def _record_until_stored(
        self, sent: Sequence[_Sent], unsent: Sequence[_Settlement],
        claimed: Mapping[Claim, Message], *, now: datetime,
    ) -> None:
        """Record what was sent, and the outcomes of what was not (`unsent`), trying
        again while the database is unreachable. The messages went out: a record lost to
        a dropped connection would leave them leased, to be sent a second time when the
        lease ran out. Gives up (raises) after `DATABASE_WAIT_S`, as a worker waiting for
        its database does."""
        for attempt in Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential(multiplier=0.1, max=5),
            stop=stop_after_delay(DATABASE_WAIT_S),
            before_sleep=_count_database_retry,
            reraise=True,
        ):
            with attempt, self._transaction() as session:
                for settle in unsent:
                    settle(session)
                self._record(session, sent, claimed, now=now)

    # --- before sending: consent, addresses, payloads ------------------------------------

    def _prepare(
        self, claimed: Mapping[Claim, Message], known: _Known, *, now: datetime
    ) -> tuple[list[_Item], list[_Settlement]]:
        """What to send for each claimed message, after the send-time checks, and the
        outcomes of those that will not go out, written with the round's record (they
        are leased to this worker meanwhile, as the sent ones are)."""
        items: list[_Item] = []
        unsent: list[_Settlement] = []
        for claim, message in claimed.items():
            channel = MessageChannel(message.channel)
            if message.expires_at is not None and message.expires_at <= now:
                unsent.append(self._final(claim, channel, MessageStatus.EXPIRED, "expired"))
                continue
            answers = known.answers
            refused = refusal(
                transactional=message.transactional,
                latest=answers.get((message.customer_id, ConsentChannel(channel.value))),
                asked_at=message.consent_requested_at or message.created_at,
                location_based=message.location_based,
                location=answers.get((message.customer_id, ConsentChannel.LOCATION_MARKETING)),
            )
            if refused is not None:
                unsent.append(self._final(claim, channel, MessageStatus.SUPPRESSED, refused))
                continue
            try:
                built = self._payloads(message, claim, known.customers.get(message.customer_id),
                                       known.devices, now=now)
            except _NotConfiguredError as error:
                unsent.append(partial(self._not_configured, claim=claim, message=message,
                                      code=error.code, now=now))
                continue
            except _UnsendableError as error:
                log.error("message %s cannot be sent: %s", message.id, error.code)
                unsent.append(self._final(claim, channel, MessageStatus.FAILED, error.code))
                continue
            if not built:
                unsent.append(self._final(claim, channel, MessageStatus.FAILED, "no_address",
                                          outcome="no_address"))
                continue
            items.extend(built)
        return items, unsent

    def _final(
        self, claim: Claim, channel: MessageChannel, status: MessageStatus, code: str, *,
        outcome: str | None = None,
    ) -> _Settlement:
        """Writes `status` (final) for a message that will not be sent."""

        def settle(session: Session) -> None:
            mark_final(session, claim=claim, status=status, error_code=code)
            self._tally(channel, outcome or status.value)

        return settle

    def _payloads(
        self, message: Message, claim: Claim, customer: Customer | None,
        devices: dict[tuple[int, DeviceKind], list[Device]], *, now: datetime,
    ) -> list[_Item]:
        channel = MessageChannel(message.channel)
        content = message.content
        token = message.tracking_token
        open_url = open_report_url(self._base, token) if token else None
        click_url = tracked_link(self._base, token) if token and message.target_url else None
        ttl_s = _ttl_s(message, now)
        data = {str(k): str(v) for k, v in dict(content.get("data") or {}).items()}
        data["message_id"] = str(message.id)
        if open_url:
            data["open_url"] = open_url

        def item(device_id: int | None, payload: _Payload) -> _Item:
            return _Item(claim, channel, message.tenant, device_id, payload)

        if channel is MessageChannel.PUSH:
            if self._channels.push is None:
                raise _NotConfiguredError("NOT_CONFIGURED")
            deep_link = content.get("deep_link") or click_url
            return [
                item(device.id, PushMessage(
                    token=device.token, title=content.get("title", message.title),
                    body=content.get("body", message.body),
                    idempotency_key=message.idempotency_key, image_url=content.get("image_url"),
                    deep_link=deep_link, data=data, ttl_s=ttl_s,
                ))
                for device in devices.get((message.customer_id, DeviceKind.FCM), [])
                if device.token
            ]
        if channel is MessageChannel.WEB_PUSH:
            if self._channels.web_push is None:
                raise _NotConfiguredError("NOT_CONFIGURED")
            return [
                item(device.id, WebPushMessage(
                    subscription=WebPushSubscription(
                        endpoint=device.token, p256dh=device.web_push_p256dh,
                        auth=device.web_push_auth,
                    ),
                    title=content.get("title", message.title),
                    body=content.get("body", message.body),
                    idempotency_key=message.idempotency_key,
                    url=click_url or content.get("deep_link"),
                    image_url=content.get("image_url"), data=data, ttl_s=ttl_s,
                    open_url=open_url,
                ))
                for device in devices.get((message.customer_id, DeviceKind.WEB_PUSH), [])
                if device.token and device.web_push_p256dh and device.web_push_auth
            ]
        if customer is None:
            return []
        if channel is MessageChannel.EMAIL:
            if self._channels.email is None:
                raise _NotConfiguredError("NOT_CONFIGURED")
            if not customer.email:
                return []
            if token is None:
                # Every email carries a one-click unsubscribe link made from its token
                # (the base URL was checked to be https when the worker started); a row
                # without one was not written by `enqueue` and never will have one.
                raise _UnsendableError("no_unsubscribe_link")
            html = str(content.get("html", ""))
            links = [str(link) for link in content.get("links", [])]
            return [item(None, EmailMessage(
                to=customer.email, subject=str(content.get("subject", message.title)),
                text=str(content.get("text", message.body)),
                html=tracked_html(html, links=links, base_url=self._base, token=token),
                idempotency_key=message.idempotency_key,
                unsubscribe_url=unsubscribe_url(self._base, token),
                unsubscribe_mailto=self._settings.delivery.unsubscribe_mailto,
            ))]
        if self._channels.sms is None:
            raise _NotConfiguredError("NOT_CONFIGURED")
        if not customer.phone:
            return []
        return [item(None, SmsMessage(
            to=customer.phone, body=str(content.get("text", message.body)),
            idempotency_key=message.idempotency_key,
        ))]

    def _not_configured(
        self, session: Session, claim: Claim, message: Message, code: str, *, now: datetime
    ) -> None:
        channel = MessageChannel(message.channel)
        session.add(MessageAttempt(
            message_id=claim.message_id, attempt=claim.attempt, attempted_at=now,
            provider=PROVIDERS[channel], outcome=AttemptOutcome.CONFIGURATION,
            error_code=code, latency_ms=0,
        ))
        self._retry_or_fail(
            session, claim, message, code=code, retry_after_s=None, configuration=True, now=now
        )
        log.warning("%s messages cannot be sent: %s", channel.value, code)

    # --- sending: no transaction open ----------------------------------------------------

    def _send(self, items: Sequence[_Item]) -> list[_Sent]:
        groups: dict[tuple[MessageChannel, str | None], list[_Item]] = {}
        for item in items:
            tenant = item.tenant if item.channel is MessageChannel.WEB_PUSH else None
            groups.setdefault((item.channel, tenant), []).append(item)
        sent: list[_Sent] = []
        for (channel, tenant), group in groups.items():
            for start in range(0, len(group), MAX_BATCH):
                chunk = group[start : start + MAX_BATCH]
                sent.extend(self._call(channel, tenant, chunk))
        return sent

    def _call(
        self, channel: MessageChannel, tenant: str | None, chunk: Sequence[_Item]
    ) -> list[_Sent]:
        payloads = [item.payload for item in chunk]
        started = time.monotonic()
        try:
            results = self._deliver(channel, tenant, payloads)
        except Exception as error:  # a sender must not raise; if one does, the batch waits
            log.exception("%s sender failed for %d messages", channel.value, len(chunk))
            results = [
                SendResult(token="", ok=False, error_code=type(error).__name__[:64])
                for _ in chunk
            ]
        latency_ms = round((time.monotonic() - started) * 1000)
        if len(results) != len(chunk):
            log.error("%s sender returned %d results for %d messages",
                      channel.value, len(results), len(chunk))
            results = [*results[: len(chunk)], *[
                SendResult(token="", ok=False, error_code="NO_RESULT")
                for _ in chunk[len(results):]
            ]]
        return [
            _Sent(item, result, latency_ms)
            for item, result in zip(chunk, results, strict=True)
        ]

    def _deliver(
        self, channel: MessageChannel, tenant: str | None, payloads: Sequence[_Payload]
    ) -> list[SendResult]:
        channels = self._channels
        if channel is MessageChannel.PUSH:
            assert channels.push is not None
            return channels.push.send([p for p in payloads if isinstance(p, PushMessage)])
        if channel is MessageChannel.WEB_PUSH:
            assert channels.web_push is not None
            assert tenant is not None
            # Looked up here, outside any transaction: the first use makes the tenant's key.
            sender = channels.web_push.sender_for(tenant)
            if sender is None:
                return [SendResult(token="", ok=False, error_code="NOT_CONFIGURED")
                        for _ in payloads]
            return sender.deliver([p for p in payloads if isinstance(p, WebPushMessage)])
        if channel is MessageChannel.EMAIL:
            assert channels.email is not None
            return channels.email.deliver([p for p in payloads if isinstance(p, EmailMessage)])
        assert channels.sms is not None
        return channels.sms.deliver([p for p in payloads if isinstance(p, SmsMessage)])

    # --- after sending: attempts, dead addresses, outcomes ---------------------------------

    def _record(
        self, session: Session, sent: Sequence[_Sent], claimed: Mapping[Claim, Message], *,
        now: datetime,
    ) -> None:
        """Every attempt, dead addresses deactivated, each message's outcome (`claimed`
        as read when claimed: a claim that no longer holds changes nothing)."""
        by_claim: dict[Claim, list[_Sent]] = {}
        attempts: list[dict[str, object]] = []
        for entry in sent:
            by_claim.setdefault(entry.item.claim, []).append(entry)
            outcome = classify(entry.result)
            attempts.append({
                "message_id": entry.item.claim.message_id, "device_id": entry.item.device_id,
                "attempt": entry.item.claim.attempt, "attempted_at": now,
                "provider": PROVIDERS[entry.item.channel], "outcome": outcome.value,
                "error_code": (entry.result.error_code or None) and entry.result.error_code[:64],
                "provider_message_id": entry.result.provider_message_id,
                "retry_after_s": entry.result.retry_after_s, "latency_ms": entry.latency_ms,
            })
            if outcome is AttemptOutcome.DEAD_ADDRESS and entry.item.device_id is not None:
                deactivate_device(
                    session, device_id=entry.item.device_id,
                    reason=f"{PROVIDERS[entry.item.channel]}: {entry.result.error_code}", now=now,
                )
        insert_rows(session.connection(), ATTEMPT_TABLE, attempts)
        reached: list[Accepted] = []
        for claim, entries in by_claim.items():
            accepted = self._settle(session, claim, claimed[claim], entries, now=now)
            if accepted is not None:
                reached.append(accepted)
        held = mark_sent_many(session, accepted=reached, now=now)
        if held < len(reached):
            log.warning("%d sent messages were claimed by another worker meanwhile",
                        len(reached) - held)

    def _settle(
        self, session: Session, claim: Claim, message: Message, entries: Sequence[_Sent],
        *, now: datetime,
    ) -> Accepted | None:
        """Reached on any address: sent (the customer has it; the other devices are not
        tried again): returned, to be marked with the round's others. Else retried if any
        address may still work, else failed."""
        channel = MessageChannel(message.channel)
        results = [entry.result for entry in entries]
        accepted = [result for result in results if result.ok]
        if accepted:
            self._tally(channel, "sent")
            provider_id = accepted[0].provider_message_id
            if channel is MessageChannel.SMS and provider_id:
                # A receipt may have come before this record: marked now, so it applies.
                if mark_sent(session, claim=claim, provider_message_id=provider_id,
                             delivered=False, now=now):
                    apply_stored_receipt(session, provider_message_id=provider_id, now=now)
                return None
            return Accepted(claim, provider_id, delivered=channel is MessageChannel.WEB_PUSH)
        outcomes = [classify(result) for result in results]
        retryable = [
            result for result, outcome in zip(results, outcomes, strict=True)
            if outcome in (AttemptOutcome.TRANSIENT, AttemptOutcome.CONFIGURATION)
        ]
        if retryable:
            hint = max((r.retry_after_s or 0.0 for r in retryable), default=0.0) or None
            self._retry_or_fail(
                session, claim, message, code=retryable[0].error_code or "UNKNOWN",
                retry_after_s=hint,
                configuration=all(classify(r) is AttemptOutcome.CONFIGURATION for r in retryable),
                now=now,
            )
            return None
        code = results[0].error_code or "UNKNOWN"
        mark_final(session, claim=claim, status=MessageStatus.FAILED, error_code=code)
        self._tally(channel, "failed")
        return None

    def _retry_or_fail(
        self, session: Session, claim: Claim, message: Message, *, code: str,
        retry_after_s: float | None, configuration: bool, now: datetime,
    ) -> None:
        channel = MessageChannel(message.channel)
        if claim.attempt >= MAX_ATTEMPTS:
            mark_final(
                session, claim=claim, status=MessageStatus.FAILED, error_code=f"gave_up:{code}"
            )
            self._tally(channel, "failed")
            return
        mark_retry(
            session, claim=claim, error_code=code, expires_at=message.expires_at,
            next_attempt_at=retry_at(
                attempt=claim.attempt, now=now, retry_after_s=retry_after_s,
                configuration=configuration, rng=self._rng,
            ),
        )
        self._tally(channel, "retry")


def _count_database_retry(state: RetryCallState) -> None:
    DATABASE_RETRIES.inc()
    log.warning("database unavailable while recording sends (%s); trying again",
                type(state.outcome.exception()).__name__ if state.outcome else "?")


def _ttl_s(message: Message, now: datetime) -> int:
    left = DEFAULT_TTL if message.expires_at is None else message.expires_at - now
    return int(min(max(left, MIN_TTL).total_seconds(), MAX_TTL_S))


def _customers(session: Session, ids: Sequence[int]) -> dict[int, Customer]:
    if not ids:
        return {}
    rows = session.exec(select(Customer).where(one_of(session, Customer.id, ids))).all()
    return {row.id: row for row in rows if row.id is not None}


def _devices(session: Session, ids: Sequence[int]) -> dict[tuple[int, DeviceKind], list[Device]]:
    if not ids:
        return {}
    rows = session.exec(
        select(Device).where(
            one_of(session, Device.customer_id, ids), col(Device.active),
            col(Device.kind).in_([DeviceKind.FCM.value, DeviceKind.WEB_PUSH.value]),
        ).order_by(col(Device.id))
    ).all()
    found: dict[tuple[int, DeviceKind], list[Device]] = {}
    for device in rows:
        found.setdefault((device.customer_id, DeviceKind(device.kind)), []).append(device)
    return found


@contextlib.contextmanager
def delivery_worker(
    settings: Settings, *, engine: Engine, push: PushSender | None = None,
    now: Callable[[], datetime] = utc_now,
) -> Iterator[DeliveryWorker]:
    """A worker with senders for every configured channel, closed on exit."""
    with DeliveryChannels.from_settings(settings, engine=engine, push=push, now=now) as channels:
        yield DeliveryWorker(engine=engine, channels=channels, settings=settings, now=now)
