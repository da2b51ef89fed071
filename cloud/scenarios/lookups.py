"""What send steps read, loaded once for a batch of journeys rather than once per send.

A batch that starts a few hundred journeys whose first step sends would otherwise ask
the database, for every send, for the customer, whether they have a device, how many
messages they had lately (the caps), the template, the store, and the tenant's own quiet
hours and time zone; and for offers, the tenant's offers and complement rules and what
the customer bought. `Lookups` answers from a handful of queries per batch. What the
batch itself queues is counted as it goes (`record_send`), so the caps see it without
reading it back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from cloud.bulk import one_of
from cloud.customers.models import Customer, Device
from cloud.messages.models import Message
from cloud.offers.crud import Bought, bought_items, list_complements, tenant_offers
from cloud.offers.models import ComplementRule, Offer
from cloud.places.crud import get_store
from cloud.places.models import StoreRow
from cloud.preferences.crud import load_rules
from cloud.preferences.precedence import OwnRules
from cloud.scenarios.facts import NOT_SENT
from cloud.templates import Template
from cloud.templates.crud import load_template


@dataclass(frozen=True, slots=True)
class RecentSend:
    """A marketing message queued for a customer, as the caps count it."""

    created_at: datetime
    channel: str
    scenario: str | None


class Lookups:
    """Customers, their device kinds and recent sends for the customers of a batch; stores
    and templates as asked for. One per attempt at a batch: what it holds is read in the
    batch's transaction and dropped with it."""

    def __init__(self, session: Session, *, now: datetime) -> None:
        self._session, self._now = session, now
        self._customers: dict[int, Customer | None] = {}
        self._device_kinds: dict[int, set[str]] = {}
        #: Each loaded customer's sends since `_since[customer]`, oldest first.
        self._sends: dict[int, list[RecentSend]] = {}
        self._since: dict[int, datetime] = {}
        self._stores: dict[tuple[str, str], StoreRow | None] = {}
        self._tenant_rules: dict[str, OwnRules] = {}
        self._templates: dict[tuple[str, str, str, str | None], Template | None] = {}
        self._offers: dict[str, Sequence[Offer]] = {}
        self._complements: dict[str, Sequence[ComplementRule]] = {}
        self._bought: dict[int, Bought] = {}

    def customers(self, customer_ids: Iterable[int]) -> dict[int, Customer]:
        """The rows of those of `customer_ids` that exist, read once per batch (customer
        facts are built from the same rows)."""
        ids = set(customer_ids)
        self._load_customers(ids)
        return {cid: row for cid in ids if (row := self._customers[cid]) is not None}

    def _load_customers(self, customer_ids: Iterable[int]) -> None:
        missing = sorted({cid for cid in customer_ids if cid not in self._customers})
        if not missing:
            return
        found = {row.id: row for row in self._session.exec(
            select(Customer).where(one_of(self._session, Customer.id, missing))
        )}
        for customer_id in missing:
            self._customers[customer_id] = found.get(customer_id)

    def preload(self, customer_ids: Iterable[int], *, sends_within: timedelta) -> None:
        """Load customers, device kinds and the sends of the last `sends_within` (the
        longest cap window the batch may check) for those not loaded yet."""
        missing = sorted({cid for cid in customer_ids if cid not in self._sends})
        if missing:
            self._load(missing, since=self._now - sends_within)

    def _load(self, ids: Sequence[int], *, since: datetime) -> None:
        session = self._session
        self._load_customers(ids)
        kinds: dict[int, set[str]] = defaultdict(set)
        for customer_id, kind in session.exec(
            select(Device.customer_id, Device.kind)
            .where(one_of(session, Device.customer_id, ids), col(Device.active)).distinct()
        ):
            kinds[customer_id].add(str(kind))
        sends: dict[int, list[RecentSend]] = defaultdict(list)
        for customer_id, created_at, channel, scenario in session.exec(
            select(Message.customer_id, Message.created_at, Message.channel, Message.scenario)
            .where(one_of(session, Message.customer_id, ids), col(Message.created_at) > since,
                   col(Message.status).not_in(sorted(NOT_SENT)),
                   col(Message.transactional).is_(False))  # consent requests are not capped
            .order_by(col(Message.created_at))
        ):
            sends[customer_id].append(RecentSend(created_at, str(channel), scenario))
        for customer_id in ids:
            self._device_kinds[customer_id] = kinds.get(customer_id, set())
            self._sends[customer_id] = sends.get(customer_id, [])
            self._since[customer_id] = since

    def customer(self, customer_id: int) -> Customer | None:
        if customer_id not in self._sends:
            self.preload([customer_id], sends_within=timedelta(0))
        return self._customers[customer_id]

    def has_device(self, customer_id: int, kind: str) -> bool:
        """Whether the customer has an active device of `kind` (`DeviceKind`)."""
        self.customer(customer_id)
        return kind in self._device_kinds[customer_id]

    def sent_since(
        self, customer_id: int, since: datetime, *, channel: str | None = None,
        scenario: str | None = None,
    ) -> int:
        """Marketing messages queued for the customer after `since` (on `channel`, from
        `scenario`), this batch's included."""
        self.customer(customer_id)
        if since < self._since[customer_id]:  # a longer window than preloaded: ask
            return self._count(customer_id, since, channel=channel, scenario=scenario)
        return sum(
            1 for send in self._sends[customer_id]
            if send.created_at > since
            and (channel is None or send.channel == channel)
            and (scenario is None or send.scenario == scenario)
        )

    def _count(
        self, customer_id: int, since: datetime, *, channel: str | None, scenario: str | None
    ) -> int:
        query = select(Message.id).where(
            Message.customer_id == customer_id, col(Message.created_at) > since,
            col(Message.status).not_in(sorted(NOT_SENT)), col(Message.transactional).is_(False),
        )
        if channel is not None:
            query = query.where(Message.channel == channel)
        if scenario is not None:
            query = query.where(Message.scenario == scenario)
        return len(self._session.exec(query).all())

    def record_send(self, customer_id: int, send: RecentSend) -> None:
        """A marketing message this batch queued (already in the database, so a customer
        loaded later reads it there: only loaded customers are told)."""
        if customer_id in self._sends:
            self._sends[customer_id].append(send)

    def preload_stores(self, stores: Iterable[tuple[str, str]]) -> None:
        """Load the (tenant, key) stores not loaded yet: one query per tenant, where a
        batch of visits to several stores would otherwise ask once per store."""
        missing: dict[str, set[str]] = defaultdict(set)
        for tenant, key in stores:
            if (tenant, key) not in self._stores:
                missing[tenant].add(key)
        for tenant, keys in missing.items():
            found = {row.key: row for row in self._session.exec(select(StoreRow).where(
                StoreRow.tenant == tenant,
                one_of(self._session, StoreRow.key, sorted(keys)),
            ))}
            for key in keys:
                self._stores[(tenant, key)] = found.get(key)

    def store(self, tenant: str, key: str) -> StoreRow | None:
        if (tenant, key) not in self._stores:
            self._stores[(tenant, key)] = get_store(self._session, tenant=tenant, key=key)
        return self._stores[(tenant, key)]

    def preload_tenant_rules(self, tenants: Iterable[str]) -> None:
        """Load the own quiet hours and zone of the tenants not loaded yet, in one query
        (a batch of timers may span tenants)."""
        missing = {tenant for tenant in tenants if tenant not in self._tenant_rules}
        if missing:
            self._tenant_rules.update(load_rules(self._session, tenants=missing))

    def tenant_rules(self, tenant: str) -> OwnRules:
        """What the tenant set of its own (through the API): read once per batch. A change
        reaches the next batch, not one in progress."""
        if tenant not in self._tenant_rules:
            self.preload_tenant_rules([tenant])
        return self._tenant_rules[tenant]

    def template(
        self, tenant: str, key: str, channel: str, locale: str | None
    ) -> Template | None:
        wanted = (tenant, key, channel, locale)
        if wanted not in self._templates:
            self._templates[wanted] = load_template(
                self._session, tenant=tenant, key=key, channel=channel, locale=locale
            )
        return self._templates[wanted]

    def offers(self, tenant: str) -> Sequence[Offer]:
        """The tenant's offers, read once per batch. Their counters stay current: issuing
        a coupon expires them on the row, which is read again when next looked at."""
        if tenant not in self._offers:
            self._offers[tenant] = tenant_offers(self._session, tenant=tenant)
        return self._offers[tenant]

    def offer(self, tenant: str, key: str) -> Offer | None:
        return next((offer for offer in self.offers(tenant) if offer.key == key), None)

    def complements(self, tenant: str) -> Sequence[ComplementRule]:
        if tenant not in self._complements:
            self._complements[tenant] = list_complements(self._session, tenant=tenant)
        return self._complements[tenant]

    def preload_bought(self, customer_ids: Iterable[int]) -> None:
        """What the customers not loaded yet bought and kept, in one query."""
        missing = {cid for cid in customer_ids if cid not in self._bought}
        if missing:
            self._bought.update(bought_items(self._session, customer_ids=missing))

    def bought(self, customer_id: int) -> Bought:
        """What the customer bought and kept (the engine records no orders, so it holds
        for the whole batch)."""
        self.preload_bought([customer_id])
        return self._bought[customer_id]
