"""Customer, consent and device operations. Every function takes keyword arguments only,
works inside the caller's session, and leaves committing to the caller."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cloud.bulk import one_of
from cloud.customers.models import (
    LINKABLE_KINDS,
    PUBLIC_ID_PATTERN,
    AppBeaconRegistration,
    ConsentCreate,
    ConsentEntry,
    ConsentPublic,
    Customer,
    CustomerCreate,
    CustomerPublic,
    Device,
    DeviceKind,
    DevicePublic,
    DeviceRegistration,
    FcmRegistration,
    IdentityLink,
    WebPushRegistration,
    WifiMacRegistration,
)
from shared.errors import ContractError
from shared.identifiers import IdentifierKind, canonical_identifier, is_randomized_mac
from shared.pseudonym import Pseudonymizer


class DuplicateCustomerError(ValueError):
    """Another customer of the tenant already has this external id."""


class RegistrationError(ValueError):
    """A device registration that cannot be accepted; the message says why."""


class OwnedElsewhereError(RegistrationError):
    """The token or identifier is registered to another customer, and the caller did not
    prove to be the customer it would move to (only that customer's token may move it)."""


def create_customer(
    session: Session, *, tenant: str, data: CustomerCreate, now: datetime,
    anonymous: bool = False,
) -> Customer:
    """A new customer (`anonymous`: an app installation nobody signed in to yet)."""
    customer = Customer.model_validate(
        data, update={"tenant": tenant, "created_at": now, "updated_at": now,
                      "anonymous": anonymous}
    )
    session.add(customer)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise DuplicateCustomerError(
            f"a customer with external_id {data.external_id!r} already exists"
        ) from None
    return customer


def get_customer(session: Session, *, tenant: str, customer_id: int) -> Customer | None:
    """By the database's number: for the back office and the workers, never for apps."""
    customer = session.get(Customer, customer_id)
    return customer if customer is not None and customer.tenant == tenant else None


def find_by_public_id(session: Session, *, tenant: str, public_id: str) -> Customer | None:
    if not PUBLIC_ID_PATTERN.fullmatch(public_id):
        return None
    return session.exec(
        select(Customer).where(Customer.tenant == tenant, Customer.public_id == public_id)
    ).first()


def find_by_external_id(session: Session, *, tenant: str, external_id: str) -> Customer | None:
    return session.exec(
        select(Customer).where(Customer.tenant == tenant, Customer.external_id == external_id)
    ).first()


def public_customer(customer: Customer) -> CustomerPublic:
    """The customer as the API shows it: named by public id, never by number."""
    return CustomerPublic.model_validate(
        customer, update={"id": customer.public_id}, from_attributes=True
    )


def public_ids(session: Session, customer_ids: Iterable[int]) -> dict[int, str]:
    """The public ids (`cus_...`) of customers the database numbers: what every view
    shows in their place (reports and the back office included)."""
    wanted = set(customer_ids)
    if not wanted:
        return {}
    return {number: public_id for number, public_id in session.exec(
        select(Customer.id, Customer.public_id).where(one_of(session, Customer.id, wanted))
    ).all() if number is not None}


def public_consent(entry: ConsentEntry, *, customer: Customer) -> ConsentPublic:
    return ConsentPublic.model_validate(
        entry, update={"customer_id": customer.public_id}, from_attributes=True
    )


def list_customers(
    session: Session, *, tenant: str, limit: int = 100, offset: int = 0
) -> Sequence[Customer]:
    query = (
        select(Customer).where(Customer.tenant == tenant)
        .order_by(col(Customer.id)).offset(offset).limit(limit)
    )
    return session.exec(query).all()


def record_consent(
    session: Session, *, customer: Customer, data: ConsentCreate, now: datetime
) -> ConsentEntry:
    """Append to the ledger; the newest `given_at` per channel is the current answer."""
    assert customer.id is not None
    entry = ConsentEntry(
        customer_id=customer.id, channel=data.channel, granted=data.granted, source=data.source,
        given_at=data.given_at or now, recorded_at=now,
    )
    session.add(entry)
    session.flush()
    return entry


def consent_ledger(session: Session, *, customer_id: int) -> Sequence[ConsentEntry]:
    query = (
        select(ConsentEntry).where(ConsentEntry.customer_id == customer_id)
        .order_by(col(ConsentEntry.given_at), col(ConsentEntry.id))
    )
    return session.exec(query).all()


def current_consent(session: Session, *, customer_id: int) -> dict[str, ConsentEntry]:
    """The latest ledger entry per channel (later `given_at` wins; ties go to the later row)."""
    current: dict[str, ConsentEntry] = {}
    for entry in consent_ledger(session, customer_id=customer_id):
        current[entry.channel] = entry
    return current


def has_consent(
    session: Session, *, customer_id: int, channels: Iterable[str]
) -> bool:
    """True only if the customer's current answer is "granted" on every channel given."""
    current = current_consent(session, customer_id=customer_id)
    return all(
        (entry := current.get(channel)) is not None and entry.granted for channel in channels
    )


def link_pseudonyms(
    registration: AppBeaconRegistration | WifiMacRegistration,
    pseudonymizers: Sequence[Pseudonymizer],
) -> list[tuple[str, str]]:
    """(key id, stable pseudonym) under every tenant key, exactly as a gateway computes it.

    The identifier itself is dropped here: only the pseudonyms are returned and stored.
    """
    try:
        if isinstance(registration, WifiMacRegistration):
            if is_randomized_mac(registration.mac):
                raise RegistrationError(
                    "this MAC address is randomized (locally administered): it changes and "
                    "cannot be linked to a customer"
                )
            canonical = canonical_identifier(IdentifierKind.WIFI_ASSOCIATION, registration.mac)
        else:
            canonical = canonical_identifier(IdentifierKind.BLE_APP, registration.install_id)
    except ContractError as error:
        raise RegistrationError(str(error)) from None
    return [(p.key_id, p.stable(canonical)) for p in pseudonymizers]


def register_device(
    session: Session,
    *,
    customer: Customer,
    registration: DeviceRegistration,
    pseudonymizers: Sequence[Pseudonymizer],
    now: datetime,
    may_move: bool = True,
) -> Device:
    """Register (or re-register) a delivery address or presence identifier.

    A token or identifier belongs to one customer at a time: registering it for another
    customer (a shared phone, a new account) moves it, if `may_move` (the caller proved
    to be that customer, or is the back office); OwnedElsewhereError otherwise, so that
    nobody holding only an app key takes another customer's phone away from them.
    """
    assert customer.id is not None
    if isinstance(registration, FcmRegistration | WebPushRegistration):
        return _register_address(session, customer=customer, registration=registration,
                                 now=now, may_move=may_move)
    if not pseudonymizers:
        raise RegistrationError(f"tenant {customer.tenant!r} has no pseudonymization key")
    links = link_pseudonyms(registration, pseudonymizers)
    existing = session.exec(
        select(IdentityLink).where(
            IdentityLink.tenant == customer.tenant,
            col(IdentityLink.pseudonym).in_([pseudonym for _, pseudonym in links]),
        )
    ).all()
    owner_devices = {link.device_id for link in existing if link.customer_id == customer.id}
    devices = {link.device_id for link in existing}
    if len(owner_devices) == 1 and devices == owner_devices:
        # Registered to this customer already, as one device: keep it, adding the links
        # of keys listed since (a key rotation: apps register again at every launch).
        device = session.get(Device, next(iter(owner_devices)))
        assert device is not None
        assert device.id is not None
        have = {link.pseudonym for link in existing}
        for key_id, pseudonym in links:
            if pseudonym not in have:
                session.add(IdentityLink(
                    tenant=customer.tenant, pseudonym=pseudonym, key_id=key_id,
                    device_id=device.id, customer_id=customer.id, created_at=now))
        session.flush()
        return device
    if not may_move and any(link.customer_id != customer.id for link in existing):
        raise _owned_elsewhere()
    for link in existing:  # the identifier moves: its old registration goes
        session.delete(link)
    for device_id in {link.device_id for link in existing}:
        old = session.get(Device, device_id)
        if old is not None:
            session.delete(old)
    session.flush()
    device = Device(
        tenant=customer.tenant, customer_id=customer.id, kind=DeviceKind(registration.kind),
        registered_at=now,
    )
    session.add(device)
    session.flush()
    assert device.id is not None
    for key_id, pseudonym in links:
        session.add(
            IdentityLink(
                tenant=customer.tenant, pseudonym=pseudonym, key_id=key_id,
                device_id=device.id, customer_id=customer.id, created_at=now,
            )
        )
    session.flush()
    return device


def _register_address(
    session: Session,
    *,
    customer: Customer,
    registration: FcmRegistration | WebPushRegistration,
    now: datetime,
    may_move: bool,
) -> Device:
    assert customer.id is not None
    if isinstance(registration, FcmRegistration):
        token, p256dh, auth = registration.token, None, None
    else:
        token = str(registration.endpoint)
        p256dh, auth = registration.keys.p256dh, registration.keys.auth
    kind = DeviceKind(registration.kind)
    device = session.exec(
        select(Device).where(
            Device.tenant == customer.tenant, Device.kind == kind, Device.token == token
        )
    ).first()
    if device is not None and device.customer_id != customer.id:
        if not may_move:
            raise _owned_elsewhere()
        session.delete(device)
        session.flush()
        device = None
    if device is None:
        device = Device(tenant=customer.tenant, customer_id=customer.id, kind=kind, token=token,
                        registered_at=now)
    device.web_push_p256dh, device.web_push_auth = p256dh, auth
    device.active, device.deactivated_at, device.deactivation_reason = True, None, None
    session.add(device)
    session.flush()
    return device


def _owned_elsewhere() -> OwnedElsewhereError:
    return OwnedElsewhereError(
        "this device is registered to another customer: moving it here needs this "
        "customer's token (X-Customer-Token)"
    )


def list_devices(session: Session, *, customer: Customer) -> list[DevicePublic]:
    devices = session.exec(
        select(Device).where(Device.customer_id == customer.id).order_by(col(Device.id))
    ).all()
    links = session.exec(
        select(IdentityLink).where(IdentityLink.customer_id == customer.id)
    ).all()
    keys: dict[int, list[str]] = {}
    for link in links:
        keys.setdefault(link.device_id, []).append(link.key_id)
    return [public_device(device, keys.get(device.id or 0, []), customer=customer)
            for device in devices]


def public_device(device: Device, key_ids: Sequence[str], *, customer: Customer) -> DevicePublic:
    assert device.id is not None
    assert device.customer_id == customer.id
    return DevicePublic(
        id=device.id, customer_id=customer.public_id, kind=DeviceKind(device.kind),
        active=device.active, registered_at=device.registered_at,
        deactivated_at=device.deactivated_at, deactivation_reason=device.deactivation_reason,
        pseudonym_key_ids=sorted(key_ids) if device.kind in LINKABLE_KINDS else [],
    )


def link_key_ids(session: Session, *, device_id: int) -> list[str]:
    return list(
        session.exec(select(IdentityLink.key_id).where(IdentityLink.device_id == device_id)).all()
    )


def active_push_devices(
    session: Session, *, customer_id: int, kind: DeviceKind = DeviceKind.FCM
) -> Sequence[Device]:
    query = (
        select(Device)
        .where(Device.customer_id == customer_id, Device.kind == kind, col(Device.active))
        .order_by(col(Device.id))
    )
    return session.exec(query).all()


def deactivate_device(session: Session, *, device_id: int, reason: str, now: datetime) -> None:
    """A provider said the token is dead: stop sending to it (kept for the record)."""
    device = session.get(Device, device_id)
    if device is not None and device.active:
        device.active, device.deactivated_at = False, now
        device.deactivation_reason = reason[:200]
        session.add(device)
        session.flush()


def customers_for_pseudonyms(
    session: Session, *, tenant: str, pseudonyms: Iterable[str]
) -> dict[str, int]:
    """Which of these pseudonyms belong to a customer, and to whom."""
    wanted = sorted(set(pseudonyms))
    if not wanted:
        return {}
    rows = session.exec(
        select(IdentityLink.pseudonym, IdentityLink.customer_id).where(
            IdentityLink.tenant == tenant, one_of(session, IdentityLink.pseudonym, wanted)
        )
    ).all()
    return dict(rows)


def customer_pseudonyms(session: Session, *, customer_id: int) -> list[str]:
    return list(
        session.exec(
            select(IdentityLink.pseudonym).where(IdentityLink.customer_id == customer_id)
        ).all()
    )


def count_customers(session: Session, *, tenant: str) -> int:
    query = select(func.count()).select_from(Customer).where(Customer.tenant == tenant)
    return int(session.exec(query).one())
