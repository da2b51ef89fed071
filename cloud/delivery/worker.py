"""The delivery worker: sends what the queue holds, through every channel, and records it.

One round (`run_once`) is two transactions with the sending between them. The first
expires what is past its `expires_at`, claims up to `batch_size` due messages and reads
what checking and addressing them needs (`cloud.delivery.addressing`; committed before
anything is sent, see `cloud.messages.queue`). Then, with no transaction open, the round
checks each customer's consent again (`cloud.customers.consent`: marketing withdrawn
since the decision, or a consent request answered "no" since it was made: suppressed),
builds one payload per address with the message's channel adapter (none: failed
'no_address') and sends them grouped by channel and tenant, in the channel's batch size.
The second transaction records what came of it (`cloud.delivery.settlement`). Sending
ends by half the lease (`cloud.channels.inflight.sending_until`): a sender starts no request
after it, so a claim never lapses while its messages may still go out.

Webhooks to the shop (`cloud.webhooks.outbound`) have rounds of their own, run beside the
message rounds by the same `run` loop and woken by the same `wake`: a shop endpoint that
hangs delays neither messages nor anything else. So do gateway configs the broker has not
taken yet, or a live gateway has not acknowledged (`cloud.delivery.gateway_configs`), every
`gateways.config_poll_interval_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Engine
from sqlmodel import Session
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from cloud.channels import (
    LOCATION_MARKETING,
    SendResult,
    UnknownChannelError,
    UnsendableError,
    adapter_for,
)
from cloud.channels.inflight import sending_until
from cloud.customers.consent import refusal
from cloud.db import DATABASE_WAIT_S, is_transient, session_scope, utc_now, wait_for_database
from cloud.delivery.addressing import RoundReads, outbound
from cloud.delivery.gateway_configs import ConfigPublisher
from cloud.delivery.receipts import apply_kept_receipts
from cloud.delivery.senders import AnySender, ChannelSenders
from cloud.delivery.settlement import Item, Outcomes, Sent
from cloud.messages.models import Message, MessageStatus
from cloud.messages.queue import LEASE, Claim, claim_due, expire_due
from cloud.messages.reasons import CHANNEL_NOT_CONFIGURED
from cloud.metrics import DATABASE_RETRIES, MESSAGES_SENT
from cloud.pacing import Every
from cloud.settings import Settings
from cloud.webhooks.outbound import WebhookSender

log = logging.getLogger(__name__)

#: Pause after an unexpected failure of a whole round (the database went away).
ERROR_PAUSE_S = 5.0
#: Why a message waits: nothing sends its channel here.
NOT_CONFIGURED = CHANNEL_NOT_CONFIGURED

#: An outcome to write in the round's record transaction.
_Settlement = Callable[[Outcomes], None]


class DeliveryWorker:
    """Sends due messages until stopped. Several may run at once, in one process or many.

        with ChannelSenders.open(settings, engine=engine, now=now) as senders:
            worker = DeliveryWorker(engine=engine, senders=senders, settings=settings)
            sent = worker.run_once(now)              # one round of messages;
            posted = worker.webhooks.run_once(now)   # one round of webhooks; or
            await worker.run(stop)                   # rounds of both until `stop` is set
    """

    def __init__(
        self,
        *,
        engine: Engine,
        senders: ChannelSenders,
        settings: Settings,
        now: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        lease: timedelta = LEASE,
    ) -> None:
        """Raises ValueError when a channel whose messages carry one-click unsubscribe
        links has a sender but the public base URL is not https: none of its messages
        could be sent, so the worker refuses to start rather than fail them at send time.
        `Settings` refuses the same configuration; this covers a sender handed in."""
        senders.check_links(settings.tracking.public_base_url)
        self._engine = engine
        self._senders = senders
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
            policy=settings.outbound.policy(),
        )
        #: Publishes gateway configs the broker did not take, in rounds of their own.
        self.configs = ConfigPublisher(engine=engine, settings=settings, now=now, rng=rng)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeups: tuple[asyncio.Event, ...] = ()
        self._sweeps = Every(settings.delivery.poll_interval_s)
        #: Outcomes of the open transaction, counted when it commits (`_transaction`).
        self._tallies: list[tuple[str, str]] = []

    def wake(self) -> None:
        """Run a round now rather than at the next poll (new messages or webhooks were
        queued); callable from any thread."""
        if self._loop is not None:
            for wakeup in self._wakeups:
                self._loop.call_soon_threadsafe(wakeup.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds of messages and, beside them, rounds of webhooks until `stop` is set:
        each at once again while its round was full, else after
        `delivery.poll_interval_s` or a `wake`; and rounds of gateway configs."""
        await asyncio.to_thread(wait_for_database, self._engine)
        messages, webhooks = asyncio.Event(), asyncio.Event()
        self._loop, self._wakeups = asyncio.get_running_loop(), (messages, webhooks)
        await asyncio.gather(
            self._rounds(stop, messages, self._paced_round, self.batch_size, "delivery"),
            self._rounds(stop, webhooks, self.webhooks.run_once, self.webhooks.batch_size,
                         "webhook"),
            self.configs.run(stop),
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
        expire what lapsed unsent and apply delivery receipts that arrived before their
        message was recorded."""
        with self._transaction() as session:
            expired = expire_due(session, now=now) if sweep else 0
            claimed = claim_due(session, now=now, limit=self.batch_size, lease=self._lease)
            reads = RoundReads.load(session, claimed.values())
            if sweep:
                apply_kept_receipts(session, now=now)
        if expired:
            MESSAGES_SENT.labels(channel="any", outcome="expired").inc(expired)
        if not claimed:
            return 0
        items, unsent = self._prepare(claimed, reads, now=now)
        # Nothing may go out once the claim could have lapsed: another worker would then
        # send it again. Half the lease leaves the other half for answers and the record.
        with sending_until(time.monotonic() + self._lease.total_seconds() / 2):
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
            MESSAGES_SENT.labels(channel=channel, outcome=outcome).inc(count)
        self._tallies.clear()

    def _tally(self, channel: str, outcome: str) -> None:
        self._tallies.append((channel, outcome))

    def _record_until_stored(
        self, sent: Sequence[Sent], unsent: Sequence[_Settlement],
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
                outcomes = Outcomes(session, now=now, rng=self._rng, tally=self._tally)
                for settle in unsent:
                    settle(outcomes)
                outcomes.sent(sent, claimed)

    # --- before sending: consent, addresses, payloads ------------------------------------

    def _prepare(
        self, claimed: Mapping[Claim, Message], reads: RoundReads, *, now: datetime
    ) -> tuple[list[Item], list[_Settlement]]:
        """What to send for each claimed message, after the send-time checks, and the
        outcomes of those that will not go out, written with the round's record (they
        are leased to this worker meanwhile, as the sent ones are)."""
        items: list[Item] = []
        unsent: list[_Settlement] = []
        for claim, message in claimed.items():
            if message.expires_at is not None and message.expires_at <= now:
                unsent.append(_final(claim, message, MessageStatus.EXPIRED, "expired"))
                continue
            refused = self._refusal(message, reads)
            if refused is not None:
                unsent.append(_final(claim, message, MessageStatus.SUPPRESSED, refused))
                continue
            try:
                built = self._items(claim, message, reads, now=now)
            except UnsendableError as error:
                log.error("message %s cannot be sent: %s", message.id, error.code)
                unsent.append(_final(claim, message, MessageStatus.FAILED, error.code))
                continue
            if built is None:
                unsent.append(partial(Outcomes.not_configured, claim=claim, message=message,
                                      code=NOT_CONFIGURED))
            elif not built:
                unsent.append(_final(claim, message, MessageStatus.FAILED, "no_address",
                                     outcome="no_address"))
            else:
                items.extend(built)
        return items, unsent

    @staticmethod
    def _refusal(message: Message, reads: RoundReads) -> str | None:
        try:
            consent = adapter_for(message.channel).consent
        except UnknownChannelError:
            return None  # no sender either: it waits as not configured
        return refusal(
            transactional=message.transactional,
            latest=reads.answers.get((message.customer_id, consent)),
            asked_at=message.consent_requested_at or message.created_at,
            location_based=message.location_based,
            location=reads.answers.get((message.customer_id, LOCATION_MARKETING)),
        )

    def _items(
        self, claim: Claim, message: Message, reads: RoundReads, *, now: datetime
    ) -> list[Item] | None:
        """A payload per address the message's channel can reach; None when nothing
        sends that channel here."""
        if self._senders.get(message.channel) is None:
            return None
        adapter = adapter_for(message.channel)
        seen = outbound(message, base_url=self._base, now=now)
        items = []
        for recipient in reads.recipients(message, adapter):
            payload = adapter.payload(seen, recipient)
            if payload is not None:
                items.append(Item(claim, message.channel, message.tenant, recipient.device_id,
                                  payload))
        return items

    # --- sending: no transaction open ----------------------------------------------------

    def _send(self, items: Sequence[Item]) -> list[Sent]:
        groups: dict[tuple[str, str], list[Item]] = {}
        for item in items:
            groups.setdefault((item.channel, item.tenant), []).append(item)
        sent: list[Sent] = []
        for (channel, tenant), group in groups.items():
            sender = self._senders.get(channel)
            assert sender is not None  # `_items` built none for a channel without one
            size = adapter_for(channel).max_batch
            for start in range(0, len(group), size):
                sent.extend(_call(sender, channel, tenant, group[start : start + size]))
        return sent


def _final(
    claim: Claim, message: Message, status: MessageStatus, code: str, *,
    outcome: str | None = None,
) -> _Settlement:
    """Writes `status` (final) for a message that will not be sent."""
    return partial(Outcomes.final, claim=claim, message=message, status=status, code=code,
                   outcome=outcome)


def _call(sender: AnySender, channel: str, tenant: str, chunk: Sequence[Item]) -> list[Sent]:
    """One provider call for `chunk`; a sender that raises (it must not) or returns the
    wrong number of results leaves the messages to be retried."""
    started = time.monotonic()
    try:
        results = sender.deliver(tenant, [item.payload for item in chunk])
    except Exception as error:
        log.exception("%s sender failed for %d messages", channel, len(chunk))
        results = [SendResult(token="", ok=False, error_code=type(error).__name__[:64])
                   for _ in chunk]
    latency_ms = round((time.monotonic() - started) * 1000)
    if len(results) != len(chunk):
        log.error("%s sender returned %d results for %d messages",
                  channel, len(results), len(chunk))
        results = [*results[: len(chunk)], *[
            SendResult(token="", ok=False, error_code="NO_RESULT")
            for _ in chunk[len(results):]
        ]]
    return [Sent(item, result, latency_ms) for item, result in zip(chunk, results, strict=True)]


def _count_database_retry(state: RetryCallState) -> None:
    DATABASE_RETRIES.inc()
    log.warning("database unavailable while recording sends (%s); trying again",
                type(state.outcome.exception()).__name__ if state.outcome else "?")


@contextlib.contextmanager
def delivery_worker(
    settings: Settings, *, engine: Engine, now: Callable[[], datetime] = utc_now,
    senders: Mapping[str, AnySender] | None = None,
) -> Iterator[DeliveryWorker]:
    """A worker with a sender for every configured channel (closed on exit); `senders`
    are the caller's own, used instead (and not closed)."""
    with ChannelSenders.open(settings, engine=engine, now=now, given=senders) as opened:
        yield DeliveryWorker(engine=engine, senders=opened, settings=settings, now=now)
