"""Builders for what gateways send, what the cloud is configured with, and who calls it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.auth.customer_tokens import add_token_key
from cloud.auth.keys import create_key, generate_key, hash_key
from cloud.auth.members import create_member, grant
from cloud.auth.models import CustomerTokenKeyCreate, Role, TokenAlgorithm
from cloud.auth.permissions import MemberRole
from cloud.channels.inflight import LimitSettings
from cloud.customers.crud import find_by_public_id
from cloud.db import session_scope
from cloud.outbound import AllowList, OutboundPolicy
from cloud.settings import Settings
from provisioning.local_broker import LocalBroker
from shared.identifiers import app_identifier, wifi_identifier
from shared.occupancy import OccupancyReport, ZoneOccupancy, encode_occupancy_report
from shared.presence import (
    PresenceBatch,
    PresenceEvent,
    PseudonymScope,
    Transition,
    encode_presence_batch,
    make_event_id,
)
from shared.pseudonym import Pseudonymizer, TenantKey
from shared.status import GatewayStatus
from shared.topics import TopicChannel, gateway_topic
from tests.support.shop_backend import ShopBackend

KEY_ID = "k1"
KEY_SECRET = "3c" * 32
PSEUDONYMIZER = Pseudonymizer(TenantKey.from_text(KEY_ID, KEY_SECRET))
#: Recent, so the worker's retention (which rewrites day-old pseudonyms) leaves test
#: events alone unless a test means it to act.
START = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
#: Universally administered (not randomized) addresses: linkable.
MAC_OF = {"juan": "00:1e:c2:aa:bb:01", "ana": "00:1e:c2:aa:bb:02"}
#: The deployment's bootstrap operator key; `cloud_settings` configures its hash.
OPERATOR_KEY = generate_key()


def cloud_settings(
    *, tenant: str, database_url: str, broker: LocalBroker | None = None, **changes: Any
) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "tenants": {tenant: {"keys": [{"key_id": KEY_ID, "secret": KEY_SECRET}]}},
        "ingest": {"batch_messages": 64, "batch_wait_s": 0.02},
        "operator_key_hash": hash_key(OPERATOR_KEY),
    }
    if broker is not None:
        values["mqtt"] = {
            "host": broker.host, "port": broker.port, "client_id": f"worker-{tenant}",
            "session_expiry_s": 300, "share_group": f"g-{tenant}",
        }
    values.update(changes)
    return Settings(**values)


def issue_key(
    engine: Engine, *, tenant: str | None, role: Role = Role.ADMIN, name: str = "test"
) -> str:
    """A stored key (what `vitrina-cloud keys create` makes); returns the key itself."""
    with session_scope(engine) as session:
        _row, key = create_key(
            session, role=role, tenant=tenant, name=name, created_by="test",
            now=datetime.now(UTC),
        )
        session.commit()
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wifi_pseudonym(mac: str) -> str:
    return PSEUDONYMIZER.stable(wifi_identifier(mac))


def app_pseudonym(install_id: str) -> str:
    return PSEUDONYMIZER.stable(app_identifier(install_id))


def make_event(
    *,
    tenant: str,
    pseudonym: str,
    store: str = "s1",
    gateway: str = "g1",
    zone: str = "floor",
    transition: Transition = Transition.ENTER,
    first_seen: datetime = START,
    last_seen: datetime | None = None,
    sequence: int = 0,
    scope: PseudonymScope = PseudonymScope.STABLE,
    randomized: bool = False,
) -> PresenceEvent:
    last = last_seen or first_seen + timedelta(seconds=5)
    return PresenceEvent(
        event_id=make_event_id(
            tenant=tenant, store=store, gateway=gateway, pseudonym=pseudonym,
            transition=transition, first_seen=first_seen, sequence=sequence,
        ),
        tenant=tenant, store=store, gateway=gateway, pseudonym=pseudonym,
        key_id=pseudonym.split(":", 1)[0], scope=scope, kind="wifi_association",
        randomized=randomized, transition=transition, zone=zone, rssi=-60.0,
        first_seen=first_seen, last_seen=last,
        dwell_s=(last - first_seen).total_seconds(), sightings=3,
    )


def many_events(
    *, tenant: str, count: int, store: str = "s1", gateway: str = "g1", offset: int = 0
) -> list[PresenceEvent]:
    """`count` distinct devices entering, one second apart."""
    return [
        make_event(
            tenant=tenant, store=store, gateway=gateway,
            pseudonym=wifi_pseudonym(f"00:1b:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:"
                                     f"{i & 255:02x}:01"),
            first_seen=START + timedelta(seconds=i),
        )
        for i in range(offset, offset + count)
    ]


def batch_payload(events: Sequence[PresenceEvent], *, sent_at: datetime = START) -> bytes:
    first = events[0]
    return encode_presence_batch(PresenceBatch(
        tenant=first.tenant, store=first.store, gateway=first.gateway, sent_at=sent_at,
        events=list(events),
    ))


def presence_topic(tenant: str, store: str = "s1", gateway: str = "g1") -> str:
    return gateway_topic(tenant, store, gateway, TopicChannel.PRESENCE)


def status_topic(tenant: str, store: str = "s1", gateway: str = "g1") -> str:
    return gateway_topic(tenant, store, gateway, TopicChannel.STATUS)


def occupancy_topic(tenant: str, store: str = "s1", gateway: str = "g1") -> str:
    return gateway_topic(tenant, store, gateway, TopicChannel.OCCUPANCY)


def occupancy_payload(
    *, tenant: str, minute: datetime, store: str = "s1", gateway: str = "g1",
    zones: dict[str, float] | None = None, addresses: int = 10,
) -> bytes:
    """A gateway's report for `minute`: `zones` maps zone to people."""
    return encode_occupancy_report(OccupancyReport(
        tenant=tenant, store=store, gateway=gateway, sent_at=minute + timedelta(minutes=5),
        window_start=minute,
        zones=[ZoneOccupancy(zone=zone, people=people, addresses=addresses, frames=5 * addresses,
                             scans=2) for zone, people in (zones or {}).items()],
    ))


def status_payload(
    *, tenant: str, store: str = "s1", gateway: str = "g1", online: bool = True,
    sent_at: datetime = START, **fields: Any,
) -> bytes:
    return GatewayStatus(
        tenant=tenant, store=store, gateway=gateway, online=online, sent_at=sent_at, **fields
    ).model_dump_json().encode()


@dataclass
class Clock:
    """A clock the app under test reads (`create_app(..., now=clock)`) and a test moves."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


CONSOLE_PASSWORD = "correct horse battery staple"
#: What the console sends with each of its requests (cloud.api.accounts).
FROM_CONSOLE = {"X-Requested-With": "vitrina-console"}


def add_member(
    engine: Engine, *, email: str, tenant: str, role: MemberRole,
    password: str = CONSOLE_PASSWORD,
) -> int:
    """An account with a role in `tenant` (what an accepted invitation makes); its id."""
    with session_scope(engine) as session:
        member = create_member(session, email=email, password=password,
                               now=datetime.now(UTC))
        grant(session, member=member, tenant=tenant, role=role, now=datetime.now(UTC))
        session.commit()
        assert member.id is not None
        return member.id


def console_login(client: TestClient, email: str, password: str = CONSOLE_PASSWORD
                  ) -> dict[str, str]:
    """Sign `client` in as the console does; the headers its changes then carry (the
    session cookie stays in the client's jar)."""
    response = client.post("/auth/login", json={"email": email, "password": password},
                           headers=FROM_CONSOLE)
    assert response.status_code == 200, response.text
    return {**FROM_CONSOLE, "X-CSRF-Token": response.json()["csrf_token"]}


#: The outbound rules as the tests' local servers need them: this machine's 127.0.0.1
#: allowed explicitly (plain http included), everything else as in production.
LOCAL_SERVERS = OutboundPolicy(allow=AllowList.parse(["127.0.0.1/32"]))
#: The in-flight limiter for tests whose worker runs on a made-up clock: a Retry-After
#: then holds nothing on the real one (each message still waits its own in the queue,
#: which is what those tests look at), or the next round, "minutes later", would wait.
CLOCKLESS_LIMITS = LimitSettings(max_hold_s=0)


def register_shop_backend(
    engine: Engine, *, tenant: str, kid: str = "shop-key-1",
    algorithm: TokenAlgorithm = TokenAlgorithm.ES256,
) -> ShopBackend:
    """A signing key of the tenant's backend, its public half registered (as
    `vitrina-cloud customer-tokens add` does)."""
    backend = ShopBackend.new(tenant, kid=kid, algorithm=algorithm)
    with session_scope(engine) as session:
        add_token_key(
            session, tenant=tenant, created_by="test", now=datetime(2026, 1, 1, tzinfo=UTC),
            data=CustomerTokenKeyCreate(kid=kid, algorithm=algorithm,
                                        public_key_pem=backend.public_key_pem),
        )
        session.commit()
    return backend


def customer_number(engine: Engine, *, tenant: str, public_id: str) -> int:
    """The database's number of the customer the API names `public_id` (what the workers
    and the back office's reports use)."""
    with session_scope(engine) as session:
        customer = find_by_public_id(session, tenant=tenant, public_id=public_id)
        assert customer is not None
        assert customer.id is not None
        return customer.id
