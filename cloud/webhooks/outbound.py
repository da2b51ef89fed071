"""The outbox of webhooks to the shop: a scenario's webhook step queues one, the delivery
worker posts it.

The step used to POST inside the transaction that handles a whole batch of triggers, with
the batch's customers locked: a slow or dead shop endpoint stalled every trigger of the
batch. Now the step only inserts an `outbound_webhook` row, in the journey's own
transaction (the webhook exists exactly when the step ran), and the journey goes on at
once. `WebhookSender`, run by the delivery worker beside its message rounds, posts due
rows with no transaction open, the way `cloud.messages.queue` sends messages:
- `queue_webhook` inserts under a unique idempotency key (`"j<journey>:<step>"`): running
  a step twice queues one webhook.
- `claim_due_webhooks` takes due rows with `FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite
  has one writer at a time) in one UPDATE that counts the attempt and moves
  `next_attempt_at` to the end of a lease; the claim commits before anything is posted,
  so another worker sees the row as not due until the lease ends.
- every outcome is written with a conditional UPDATE on (status queued, attempt number):
  a worker whose lease ran out cannot overwrite the outcome of the one that took over.

Delivery is at least once. A worker killed between the POST and recording its outcome
leaves the row queued, and after the lease it is posted again. The body carries the
idempotency key as `"id"`, the same on every attempt, so the shop can drop a repeat.

Each POST is signed at send time with the tenant's first webhook secret, exactly as the
shop signs its webhooks to us (`cloud.webhooks.inbound`): `X-Vitrina-Timestamp` is the
time of the attempt, so a retry hours later still passes the shop's freshness check.
Outcomes: 2xx sent; 408, 429, 5xx and network errors retried with exponential backoff and
jitter, never sooner than Retry-After; anything else (other 4xx, and 3xx: redirects are not
followed, a POST must not turn into a GET elsewhere) failed for good, as is a webhook still
failing after `MAX_ATTEMPTS`.

The URL was checked when the scenario was saved; it is checked again at each attempt
(`cloud.outbound`: resolved once, posted to the address checked), since DNS answers
change and a scenario saved before the rules existed was never checked. A refused URL
fails the webhook for good, with `last_error` "refused (<rule>): <why>", and counts in
`vitrina_outbound_refusals{client="webhook", stage="send"}`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text, and_
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel

from cloud.channels.retry import parse_retry_after
from cloud.db import UtcDateTime, dialect_insert, session_scope
from cloud.leases import claim_rows, retry_at, settle_claim
from cloud.metrics import OUTBOUND_WEBHOOKS
from cloud.outbound import OutboundPolicy, RefusedTargetError, count_refusal, guarded_session
from cloud.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

log = logging.getLogger(__name__)

#: How long a claimed webhook is left to the worker that claimed it. A round posts all it
#: claimed at once, so it lasts one timeout (`scenarios.webhook_timeout_s`, at most 30 s,
#: to connect and as long again to read the status line): a live worker never loses a
#: webhook to another, while a killed worker's webhooks go out minutes later.
LEASE = timedelta(minutes=5)
#: Webhooks claimed per round, each posted on a thread of its own: a round takes one
#: timeout however many shops are down, and this many idle threads cost nothing.
BATCH_SIZE = 16
#: Attempts before a webhook is given up. With `retry_at`'s backoff (30 s doubling to an
#: hour, with jitter) that is between 9 and 17 hours of trying: a shop's endpoint down
#: overnight is ridden out, while facts older than that have lost their point.
MAX_ATTEMPTS = 24
#: HTTP statuses that may succeed later (besides every 5xx): request timeout, rate limit.
RETRY_STATUSES = frozenset({408, 429})
#: Errors no retry can cure: the URL itself cannot be requested (a RefusedTargetError,
#: an InvalidURL, is handled before these).
_UNSENDABLE = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
)


class WebhookStatus(StrEnum):
    #: Waiting for its first or next attempt (also while a worker holds it: its
    #: `next_attempt_at` is then the end of the lease).
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class OutboundWebhook(SQLModel, table=True):
    """One webhook to the shop, from one step of one journey."""

    __tablename__ = "outbound_webhook"
    __table_args__ = (
        Index("ix_outbound_webhook_due", "status", "next_attempt_at"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    #: Whose journey it tells of: erasing the customer deletes their webhooks.
    customer_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    journey_id: int
    step: str = Field(max_length=64)
    url: str = Field(sa_type=Text)
    #: The JSON body exactly as posted (and signed) on every attempt.
    body: str = Field(sa_type=Text)
    #: `"j<journey>:<step>"`, also the body's `"id"`: the shop dedupes on it.
    idempotency_key: str = Field(max_length=255, unique=True)
    status: WebhookStatus = Field(sa_type=String(16))
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_attempt_at: datetime = Field(sa_type=UtcDateTime)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    #: The HTTP status of the last attempt; None when it got no answer.
    last_status: int | None = None
    #: Why the last attempt did not succeed ("HTTP 503", "ConnectTimeout", ...).
    last_error: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(sa_type=UtcDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


WEBHOOK_TABLE: Table = SQLModel.metadata.tables[OutboundWebhook.__tablename__]


class ScenarioStepWebhook(BaseModel):
    """The body a scenario's webhook step posts to the shop (`cloud.scenarios.actions`),
    as the shop receives it: the OpenAPI document publishes it under `webhooks`, so a
    shop can generate its receiver from the schema rather than from a sample."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "j815:notify-shop", "type": "scenario.step", "tenant": "acme",
        "customer_id": 42, "scenario": "cross-sell-dryer", "step": "notify-shop",
        "journey_id": 815, "entry": "presence.enter", "variant": "A",
        "at": "2026-12-07T10:15:00+00:00",
    }]})

    id: str = PydanticField(description="`j<journey>:<step>`, the same on every attempt: "
                            "the idempotency key to drop a repeat on")
    type: Literal["scenario.step"]
    tenant: str
    customer_id: int = PydanticField(description="the orchestrator's number of the customer")
    scenario: str = PydanticField(description="the scenario's key")
    step: str = PydanticField(description="the webhook step's id")
    journey_id: int
    entry: str = PydanticField(description="the trigger kind that started the journey")
    variant: str | None = PydanticField(description="the A/B variant, or null")
    at: datetime = PydanticField(description="when the step ran")


def webhook_key(journey_id: int, step_id: str) -> str:
    return f"j{journey_id}:{step_id}"


def queue_webhook(
    session: Session, *, tenant: str, customer_id: int, journey_id: int, step: str, url: str,
    body: Mapping[str, Any], now: datetime,
) -> int | None:
    """Queue a webhook in the caller's transaction, due at once; its id, or None when this
    (journey, step) queued one before. The body is stored as compact JSON with the
    idempotency key added as `"id"`."""
    key = webhook_key(journey_id, step)
    text = json.dumps({"id": key, **body}, separators=(",", ":"))
    statement = (
        dialect_insert(session, WEBHOOK_TABLE)
        .values(
            tenant=tenant, customer_id=customer_id, journey_id=journey_id, step=step[:64],
            url=url, body=text, idempotency_key=key, status=WebhookStatus.QUEUED.value,
            attempts=0, next_attempt_at=now, created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(WEBHOOK_TABLE.c.id)
    )
    row = session.connection().execute(statement).first()
    if row is None:
        return None
    OUTBOUND_WEBHOOKS.labels(outcome="queued").inc()
    return int(row[0])


@dataclass(frozen=True, slots=True)
class WebhookClaim:
    """A webhook this worker may post now; `attempt` is its attempt number."""

    webhook_id: int
    attempt: int
    tenant: str
    url: str
    body: str


def claim_due_webhooks(
    session: Session, *, now: datetime, limit: int, lease: timedelta = LEASE
) -> list[WebhookClaim]:
    """Take up to `limit` due webhooks (oldest due first), as the send queue takes its
    messages (`cloud.leases.claim_rows`); the caller commits before posting."""
    table = WEBHOOK_TABLE
    rows = claim_rows(
        session, table=table, limit=limit,
        due=and_(table.c.status == WebhookStatus.QUEUED.value, table.c.next_attempt_at <= now),
        values={"attempts": table.c.attempts + 1, "last_attempt_at": now,
                "next_attempt_at": now + lease},
        returning=[table.c.id, table.c.attempts, table.c.tenant, table.c.url, table.c.body],
    )
    return sorted(
        (WebhookClaim(int(row[0]), int(row[1]), str(row[2]), str(row[3]), str(row[4]))
         for row in rows),
        key=lambda claim: claim.webhook_id,
    )


class Verdict(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PostResult:
    """One attempt's outcome: `status` is None when no HTTP answer came."""

    verdict: Verdict
    status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    latency_ms: int = 0


def verdict_for(status: int) -> Verdict:
    if 200 <= status < 300:
        return Verdict.SENT
    if status in RETRY_STATUSES or 500 <= status < 600:
        return Verdict.RETRY
    return Verdict.FAILED


def signed_headers(body: bytes, *, secrets: Sequence[str], now: datetime) -> dict[str, str]:
    """What a webhook is posted with: signed with the first secret, when there is one."""
    stamp = int(now.timestamp())
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(stamp)}
    if secrets:
        headers[SIGNATURE_HEADER] = sign(secrets[0], stamp, body)
    return headers


def post_webhook(
    claim: WebhookClaim, *, secrets: Sequence[str], timeout_s: float, now: datetime,
    session: requests.Session,
) -> PostResult:
    """POST one claimed webhook through `session` (a `cloud.outbound.guarded_session`);
    never raises for an HTTP or network error, nor for a refused URL. The answer's body
    is not read: only its status and Retry-After matter."""
    body = claim.body.encode()
    started = time.monotonic()
    try:
        response = session.post(
            claim.url, data=body, headers=signed_headers(body, secrets=secrets, now=now),
            timeout=timeout_s, allow_redirects=False, stream=True,
        )
    except RefusedTargetError as error:
        count_refusal(error.refusal, client="webhook", stage="send", tenant=claim.tenant)
        return PostResult(Verdict.FAILED,
                          error=f"refused ({error.refusal.rule}): {error.refusal.reason}")
    except _UNSENDABLE as error:
        return PostResult(Verdict.FAILED, error=type(error).__name__)
    except requests.RequestException as error:
        return PostResult(Verdict.RETRY, error=type(error).__name__,
                          latency_ms=_since(started))
    with response:
        status = response.status_code
        verdict = verdict_for(status)
        return PostResult(
            verdict, status=status,
            error=None if verdict is Verdict.SENT else f"HTTP {status}",
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            latency_ms=_since(started),
        )


def _since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _settle(session: Session, claim: WebhookClaim, **values: object) -> bool:
    return settle_claim(session, table=WEBHOOK_TABLE, row_id=claim.webhook_id,
                        held_status=WebhookStatus.QUEUED.value, attempt=claim.attempt,
                        values=values)


def record_outcome(
    session: Session, *, claim: WebhookClaim, result: PostResult, now: datetime,
    rng: random.Random, max_attempts: int = MAX_ATTEMPTS,
) -> Verdict:
    """Record one attempt on its row: sent, queued again for later, or failed for good
    (a 4xx, or the attempts are spent). Returns what became of the webhook."""
    verdict = result.verdict
    if verdict is Verdict.RETRY and claim.attempt >= max_attempts:
        verdict = Verdict.FAILED
    values: dict[str, object] = {
        "last_status": result.status,
        "last_error": None if result.error is None else result.error[:200],
    }
    if verdict is Verdict.SENT:
        values.update(status=WebhookStatus.SENT.value, sent_at=now)
    elif verdict is Verdict.RETRY:
        values["next_attempt_at"] = retry_at(
            attempt=claim.attempt, now=now, retry_after_s=result.retry_after_s,
            configuration=False, rng=rng,
        )
    else:
        values["status"] = WebhookStatus.FAILED.value
    if not _settle(session, claim, **values):
        log.info("webhook %s: attempt %s outlived its lease; outcome not recorded",
                 claim.webhook_id, claim.attempt)
        return verdict
    OUTBOUND_WEBHOOKS.labels(outcome=verdict.value).inc()
    if verdict is Verdict.FAILED:
        log.warning(
            "webhook %s of tenant %s to %s failed for good after %d attempt(s): %s",
            claim.webhook_id, claim.tenant, urlsplit(claim.url).netloc, claim.attempt,
            result.error,
        )
    return verdict


class WebhookSender:
    """Posts due webhooks; the delivery worker runs its rounds (`run_once`) beside the
    message rounds, so a slow shop endpoint delays neither messages nor triggers.
    Several may run at once, in one process or many."""

    def __init__(
        self, *, engine: Engine, secrets: Callable[[str], list[str]], timeout_s: float,
        policy: OutboundPolicy, rng: random.Random | None = None, lease: timedelta = LEASE,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        """`policy` decides where webhooks may go (`outbound.policy()` of the settings)."""
        self._engine = engine
        #: One pool of connections for every round's threads, pinned per request.
        self._session = guarded_session(policy, pool_maxsize=batch_size, max_retries=0)
        self._secrets = secrets
        self._timeout_s = timeout_s
        self._rng = rng or random.Random()
        self._lease = lease
        self.batch_size = batch_size

    def run_once(self, now: datetime) -> int:
        """Claim (one transaction), post (none), record (another); returns how many
        webhooks it claimed."""
        with session_scope(self._engine) as session:
            claims = claim_due_webhooks(session, now=now, limit=self.batch_size,
                                        lease=self._lease)
            session.commit()
        if not claims:
            return 0
        results = self._post_all(claims, now=now)
        with session_scope(self._engine) as session:
            for claim, result in zip(claims, results, strict=True):
                record_outcome(session, claim=claim, result=result, now=now, rng=self._rng)
            session.commit()
        return len(claims)

    def _post_all(self, claims: Sequence[WebhookClaim], *, now: datetime) -> list[PostResult]:
        def post(claim: WebhookClaim) -> PostResult:
            try:
                return post_webhook(claim, secrets=self._secrets(claim.tenant),
                                    timeout_s=self._timeout_s, now=now,
                                    session=self._session)
            except Exception as error:  # must not lose the other results of the round
                log.exception("posting webhook %s failed", claim.webhook_id)
                return PostResult(Verdict.RETRY, error=type(error).__name__)

        with ThreadPoolExecutor(max_workers=len(claims),
                                thread_name_prefix="vitrina-webhook") as pool:
            return list(pool.map(post, claims))

    def close(self) -> None:
        """Close the pooled connections (the delivery worker calls it when it stops)."""
        self._session.close()
