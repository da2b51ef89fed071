"""Rotating a tenant's pseudonymization key, end to end.

1. The operator adds the new key to the tenant's keys in the settings (anywhere in the
   list: the database, not the order, says which key is active once the tenant has been
   seen). Processes started with it see it as *listed* (`sync_ring`): from then
   registrations link devices under it too, a re-registration adds the links a device
   lacks, and the delivery stage, when it starts, saves for every gateway that can
   receive keys a config carrying the tenant's keys sealed to that gateway
   (`deliver`). Each gateway opens them, keeps them and lists their ids in its heartbeat.
2. An admin activates it (`activate`): refused while a live gateway does not report
   holding it (unless forced); then every gateway's config names it as active.
3. Once no gateway uses the old key as its active one, an admin retires it (`retire`):
   its identity links are deleted, and the configs, which no longer carry it, make the
   gateways erase it.

The cloud never stores a raw identifier, so it cannot compute pseudonyms under a new key
for a device on its own: a device gets them when its app registers it again. Apps are
asked to register their beacon id (and the guest Wi-Fi its MAC) at every launch, which
costs nothing when nothing changed (docs/operations.md, "Rotating keys"). A device not
registered again before the old key is retired stops linking until it is.

Every function works in the caller's session and leaves committing to it; configs saved
here are published by the caller or by the delivery stage's worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, SQLModel, col, select

from cloud.customers.models import IdentityLink
from cloud.db import dialect_insert
from cloud.gateways.crud import list_registered, save_config
from cloud.gateways.models import GatewayConfigUpdate, GatewayState, RegisteredGateway
from cloud.presence.models import GatewayHealth
from cloud.rotation.models import (
    GatewayKeysPublic,
    KeyRotationPublic,
    KeyState,
    TenantKeyPublic,
    TenantKeyState,
)
from cloud.settings import TenantSettings
from shared.errors import ContractError
from shared.pseudonym import Pseudonymizer, TenantKey
from shared.sealing import SealContext, SealedKey, parse_public_key, seal_key

log = logging.getLogger(__name__)

#: A gateway is live when it is online and reported this recently (heartbeats come every
#: 30 s by default): the gateways whose word a switch waits for.
LIVE_WITHIN = timedelta(minutes=5)
#: The config fields the rotation sets: an admin's saved config keeps everything else.
MANAGED_FIELDS = frozenset({"version", "keys", "active_key_id", "schema_version"})
RE_ENROL = "enrolled before keys could be delivered remotely: re-enrol it to receive keys"


class RotationRefusedError(ValueError):
    """The step cannot be taken now; the message says why and what to do."""


class UnknownKeyError(LookupError):
    """The tenant has no key of that id."""


@dataclass(frozen=True, slots=True)
class TenantRing:
    """A tenant's keys as this process can use them."""

    tenant: str
    active: str
    states: dict[str, TenantKeyState]
    #: Secrets in this process's settings, of keys not retired.
    configured: dict[str, TenantKey]

    @property
    def held(self) -> list[str]:
        """Ids of the keys in use (active first, then listed): linked, delivered, held."""
        listed = sorted(key_id for key_id, row in self.states.items()
                        if row.state == KeyState.LISTED)
        return [self.active, *listed]

    @property
    def missing(self) -> list[str]:
        """Keys in use whose secret this process's settings lack."""
        return [key_id for key_id in self.held if key_id not in self.configured]

    def deliverable(self) -> list[TenantKey]:
        """The keys in use, active first; RotationRefusedError if this process lacks any:
        a gateway given fewer would erase the others."""
        if self.missing:
            raise RotationRefusedError(
                f"this process's settings lack the secret of key(s) {', '.join(self.missing)} "
                f"of tenant {self.tenant!r}, which are in use: restart it with the tenant's "
                "current keys (or retire those keys first)")
        return [self.configured[key_id] for key_id in self.held]

    def enrolment_keys(self) -> list[TenantKey]:
        """The keys a newly enrolled gateway's bundle holds, active first (those this
        process has; the delivery stage sends the rest)."""
        if self.active not in self.configured:
            raise RotationRefusedError(
                f"this process's settings lack the secret of tenant {self.tenant!r}'s active "
                f"key {self.active!r}: restart it with the tenant's current keys")
        return [self.configured[key_id] for key_id in self.held if key_id in self.configured]

    def linking(self) -> list[Pseudonymizer]:
        """Pseudonymizers for linking devices: every key in use this process has."""
        return [Pseudonymizer(self.configured[key_id]) for key_id in self.held
                if key_id in self.configured]


def sync_ring(session: Session, *, tenant: str, settings: TenantSettings, now: datetime
              ) -> TenantRing:
    """The tenant's ring, after recording the keys of `settings` not seen before (the first
    key of a tenant never seen becomes active; later ones are listed)."""
    rows = _rows(session, tenant)
    new = [key for key in settings.keys if key.key_id not in rows]
    if new:
        statement = dialect_insert(session, SQLModel.metadata.tables[TenantKeyState.__tablename__])
        session.connection().execute(statement.on_conflict_do_nothing(), [
            {"tenant": tenant, "key_id": key.key_id, "listed_at": now,
             "state": KeyState.ACTIVE if not rows and index == 0 else KeyState.LISTED,
             "activated_at": now if not rows and index == 0 else None}
            for index, key in enumerate(new)])
        rows = _rows(session, tenant)
    actives = sorted(key_id for key_id, row in rows.items() if row.state == KeyState.ACTIVE)
    if len(actives) != 1:  # two processes met a new tenant at once with different lists
        listed = [key.key_id for key in settings.keys
                  if rows[key.key_id].state != KeyState.RETIRED]
        keep = actives[0] if actives else listed[0]
        for key_id, row in rows.items():
            if row.state != KeyState.RETIRED:
                row.state = KeyState.ACTIVE if key_id == keep else KeyState.LISTED
                session.add(row)
        session.flush()
        actives = [keep]
    configured = {key.key_id: key.tenant_key() for key in settings.keys
                  if rows[key.key_id].state != KeyState.RETIRED}
    return TenantRing(tenant=tenant, active=actives[0], states=rows, configured=configured)


def _rows(session: Session, tenant: str, *, lock: bool = False) -> dict[str, TenantKeyState]:
    query = select(TenantKeyState).where(TenantKeyState.tenant == tenant)
    if lock:
        query = query.with_for_update()
    return {row.key_id: row for row in session.exec(query).all()}


# -- configs ---------------------------------------------------------------------------

def compose(config: GatewayConfigUpdate, *, row: RegisteredGateway, ring: TenantRing,
            version: int) -> GatewayConfigUpdate:
    """`config` completed for `row` at `version`: the tenant's active key unless it names
    one, the key its store beacon rotates under, and, for a gateway that can receive
    them, the keys in use sealed to it."""
    update: dict[str, object] = {}
    if config.active_key_id is None:
        update["active_key_id"] = ring.active
    if config.beacon is not None and config.beacon.key_id not in ring.held:
        # The store beacon rotates under a key the gateway holds: the active one unless
        # the admin named another in use (a retired key would leave it unable to).
        update["beacon"] = config.beacon.model_copy(update={"key_id": ring.active})
    if row.seal_public_key is not None:
        recipient = parse_public_key(row.seal_public_key)
        context = SealContext(tenant=row.tenant, store=row.store, gateway=row.gateway,
                              config_version=version)
        update["keys"] = [seal_key(key, recipient=recipient, context=context).to_text()
                          for key in ring.deliverable()]
    return config.model_copy(update=update)


def completing(row: RegisteredGateway, ring: TenantRing
               ) -> Callable[[GatewayConfigUpdate, int], GatewayConfigUpdate]:
    """`compose` for `save_config`'s `prepare`: the ring sealed to `row` at the version."""
    def prepare(config: GatewayConfigUpdate, version: int) -> GatewayConfigUpdate:
        return compose(config, row=row, ring=ring, version=version)
    return prepare


def _delivered_ids(document: dict[str, object] | None) -> list[str] | None:
    texts = (document or {}).get("keys")
    if not isinstance(texts, list):
        return None
    try:
        return sorted(SealedKey.from_text(text).key_id for text in texts)
    except ContractError:
        return None


def deliver(session: Session, *, ring: TenantRing, now: datetime,
            include_sealless: bool = False) -> list[RegisteredGateway]:
    """Save a new config version for every enrolled gateway of the tenant whose saved
    config does not carry the ring (its keys, sealed, and its active key id); the rows
    saved. Gateways that cannot receive keys are included only with `include_sealless`
    (an activation: their config names the new active key, which they refuse unless
    their own file holds it)."""
    saved = []
    for row in _enrolled(session, ring.tenant):
        if not row.receives_keys and not include_sealless:
            continue
        document = row.config or {}
        wanted = sorted(ring.held) if row.receives_keys else None
        if (_delivered_ids(row.config) == wanted
                and document.get("active_key_id") == ring.active):
            continue
        base = GatewayConfigUpdate.model_validate(
            {name: value for name, value in document.items() if name not in MANAGED_FIELDS})
        save_config(session, row=row, config=base, now=now,
                    prepare=completing(row, ring))
        saved.append(row)
    if saved:
        log.info("tenant keys delivered in new configs", extra={
            "tenant": ring.tenant, "gateways": len(saved), "active_key_id": ring.active})
    return saved


def _enrolled(session: Session, tenant: str) -> list[RegisteredGateway]:
    rows = session.exec(
        select(RegisteredGateway).where(RegisteredGateway.tenant == tenant,
                                        col(RegisteredGateway.enrolled_at).is_not(None),
                                        col(RegisteredGateway.revoked_at).is_(None))
        .order_by(col(RegisteredGateway.id)).with_for_update()
    ).all()
    return list(rows)


# -- what the gateways say ---------------------------------------------------------------

def gateway_reports(session: Session, *, tenant: str, now: datetime) -> list[GatewayKeysPublic]:
    """Every gateway of the tenant that reports or is enrolled here (revoked ones left out),
    with the keys it says it holds."""
    registered = {(row.store, row.gateway): row for row in list_registered(session, tenant=tenant)}
    health = {(row.store, row.gateway): row for row in session.exec(
        select(GatewayHealth).where(GatewayHealth.tenant == tenant)).all()}
    reports = []
    for place in sorted(set(registered) | set(health)):
        row, status = registered.get(place), health.get(place)
        if row is not None and row.state is not GatewayState.ENROLLED:
            continue
        if row is None and status is None:
            continue
        live = bool(status is not None and status.online
                    and status.received_at >= now - LIVE_WITHIN)
        receives = row is not None and row.receives_keys
        note = ""
        if row is None:
            note = "not registered here (enrolled offline): its keys come from its own file"
        elif not receives:
            note = RE_ENROL
        elif status is not None and status.key_ids is None:
            note = "its software does not report the keys it holds: upgrade it"
        reports.append(GatewayKeysPublic(
            store=place[0], gateway=place[1], live=live, receives_keys=receives,
            active_key_id=status.active_key_id if status else None,
            key_ids=status.key_ids if status else None, note=note))
    return reports


def rotation_public(session: Session, *, ring: TenantRing, now: datetime, outcome: str = ""
                    ) -> KeyRotationPublic:
    reports = gateway_reports(session, tenant=ring.tenant, now=now)
    live = [report for report in reports if report.live]
    keys = [
        TenantKeyPublic(
            key_id=row.key_id, state=KeyState(row.state), configured=row.key_id in ring.configured,
            listed_at=row.listed_at, activated_at=row.activated_at, retired_at=row.retired_at,
            links_deleted=row.links_deleted,
            live_gateways_holding=sum(row.key_id in (report.key_ids or []) for report in live))
        for row in sorted(ring.states.values(),
                          key=lambda row: (row.state == KeyState.RETIRED, row.listed_at,
                                           row.key_id))
    ]
    return KeyRotationPublic(tenant=ring.tenant, active_key_id=ring.active, keys=keys,
                             live_gateways=len(live), gateways=reports, outcome=outcome)


def _names(reports: Sequence[GatewayKeysPublic]) -> str:
    shown = [f"{report.store}/{report.gateway}" + (f" ({report.note})" if report.note else "")
             for report in reports[:10]]
    more = f" and {len(reports) - 10} more" if len(reports) > 10 else ""
    return "; ".join(shown) + more


# -- the steps -----------------------------------------------------------------------------

def _state_of(ring: TenantRing, key_id: str) -> TenantKeyState:
    row = ring.states.get(key_id)
    if row is None:
        raise UnknownKeyError(
            f"tenant {ring.tenant!r} has no key {key_id!r}: add it to the tenant's keys in "
            "the settings and restart the orchestrator first")
    return row


def activate(session: Session, *, tenant: str, settings: TenantSettings, key_id: str,
             now: datetime, force: bool = False) -> tuple[TenantRing, list[RegisteredGateway]]:
    """Make `key_id` the tenant's active key and save every gateway's config naming it;
    the new ring and the configs saved. RotationRefusedError (nothing changed) while a live
    gateway does not report holding it, unless `force`."""
    _rows(session, tenant, lock=True)
    ring = sync_ring(session, tenant=tenant, settings=settings, now=now)
    row = _state_of(ring, key_id)
    if row.state == KeyState.RETIRED:
        raise RotationRefusedError(
            f"key {key_id!r} is retired, and a retired key never comes back: add a new key")
    ring.deliverable()  # every key in use must be deliverable before anything changes
    if row.state != KeyState.ACTIVE:
        lacking = [report for report in gateway_reports(session, tenant=tenant, now=now)
                   if report.live and key_id not in (report.key_ids or [])]
        if lacking and not force:
            raise RotationRefusedError(
                f"{len(lacking)} live gateway(s) do not report holding key {key_id!r} yet: "
                f"{_names(lacking)}. Wait for them to take the delivered key, or force the "
                "switch (their events then stop linking until they hold it)")
        previous = ring.states[ring.active]
        previous.state = KeyState.LISTED
        row.state, row.activated_at = KeyState.ACTIVE, now
        session.add_all([previous, row])
        session.flush()
        ring = replace(ring, active=key_id)
    return ring, deliver(session, ring=ring, now=now, include_sealless=True)


def retire(session: Session, *, tenant: str, settings: TenantSettings, key_id: str,
           now: datetime, force: bool = False) -> tuple[TenantRing, list[RegisteredGateway]]:
    """Retire `key_id`: its identity links are deleted and the configs saved without it make
    the gateways erase it. RotationRefusedError (nothing changed) for the active key, and
    while a gateway still uses it as its active key (saved config or last report), unless
    `force`."""
    _rows(session, tenant, lock=True)
    ring = sync_ring(session, tenant=tenant, settings=settings, now=now)
    row = _state_of(ring, key_id)
    if row.state == KeyState.RETIRED:
        return ring, []
    if row.state == KeyState.ACTIVE:
        raise RotationRefusedError(
            f"key {key_id!r} is the tenant's active key: activate another key first")
    users = [report for report in gateway_reports(session, tenant=tenant, now=now)
             if report.active_key_id == key_id]
    configured = [gateway for gateway in _enrolled(session, tenant)
                  if (gateway.config or {}).get("active_key_id") == key_id]
    if (users or configured) and not force:
        names = _names(users) or ", ".join(f"{g.store}/{g.gateway}" for g in configured)
        raise RotationRefusedError(
            f"key {key_id!r} is still the active key of gateway(s) {names}: wait until they "
            "report the new active key, or force (their events under it then stop linking)")
    row.state, row.retired_at = KeyState.RETIRED, now
    result = session.connection().execute(
        delete(IdentityLink).where(col(IdentityLink.tenant) == tenant,
                                   col(IdentityLink.key_id) == key_id))
    row.links_deleted = result.rowcount
    session.add(row)
    session.flush()
    states = dict(ring.states)
    configured_keys = {k: v for k, v in ring.configured.items() if k != key_id}
    ring = replace(ring, states=states, configured=configured_keys)
    log.info("tenant key retired", extra={"tenant": tenant, "key_id": key_id,
                                           "links_deleted": row.links_deleted})
    return ring, deliver(session, ring=ring, now=now)
