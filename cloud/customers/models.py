"""Customers, their consent ledger, their devices and the pseudonyms that link devices to them.

Consent is a ledger, never a flag: every grant and withdrawal is a row with when and
where it was given, and the latest row per channel is the customer's current answer.
A device a customer hands over as a presence identifier (the app's beacon install id,
the MAC the guest Wi-Fi saw at login) is stored only as its keyed pseudonyms.
"""

from __future__ import annotations

import functools
import re
import secrets
import zoneinfo
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    FiniteFloat,
    HttpUrl,
    StringConstraints,
)
from pydantic import (
    Field as PydanticField,
)
from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from cloud.bounds import INT8_MAX, BoundedText, DbDate, DbDatetime
from cloud.channels import ConsentKind
from cloud.db import UtcDateTime
from cloud.examples import CUSTOMER_ID, example

#: Deliberately loose: the shop validated the address when the customer typed it;
#: this only catches values that cannot be an address at all.
EMAIL_PATTERN = r"^[^@\s\x00]{1,64}@[^@\s\x00]{1,190}\.[^@\s\x00]{1,63}$"
#: E.164: "+", country code, subscriber number; what SMS providers accept.
PHONE_PATTERN = r"^\+[1-9][0-9]{6,14}$"
SOURCE_PATTERN = r"^[a-z0-9][a-z0-9_.:-]{0,63}$"
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"
#: BCP 47-ish: "es", "es-ES", "pt_BR".
LOCALE_PATTERN = r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"

#: Profile fields: a hundred, each named in a few words and holding a short value.
MAX_ATTRIBUTES = 100
AttributeName = Annotated[BoundedText, StringConstraints(min_length=1, max_length=64)]
AttributeValue = (
    Annotated[BoundedText, StringConstraints(max_length=1000)]
    | Annotated[int, PydanticField(ge=-INT8_MAX, le=INT8_MAX)]
    | FiniteFloat
    | bool
)

#: Customers are named in API paths and answers by a public id: 128 random bits, so that
#: nobody can guess another customer's (the database's own number is a sequence, shared
#: by every tenant, and stays inside). The prefix tells a customer id from other ids.
PUBLIC_ID_PREFIX = "cus_"
PUBLIC_ID_BYTES = 16
PUBLIC_ID_PATTERN = re.compile(r"^cus_[0-9a-f]{32}$")


def new_public_id() -> str:
    return f"{PUBLIC_ID_PREFIX}{secrets.token_hex(PUBLIC_ID_BYTES)}"


# Patterns are declared with pydantic's Annotated constraints: SQLModel's `regex=`
# argument is not enforced by pydantic 2.
ExternalId = Annotated[str, StringConstraints(pattern=EXTERNAL_ID_PATTERN)]
Email = Annotated[str, StringConstraints(pattern=EMAIL_PATTERN)]
Phone = Annotated[str, StringConstraints(pattern=PHONE_PATTERN)]
Locale = Annotated[str, StringConstraints(pattern=LOCALE_PATTERN)]
Source = Annotated[str, StringConstraints(pattern=SOURCE_PATTERN)]


def _known_time_zone(value: str) -> str:
    if value not in _time_zones():
        raise ValueError("is not a known IANA time zone (e.g. Europe/Madrid)")
    return value


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


TimeZone = Annotated[str, AfterValidator(_known_time_zone)]


class DeviceKind(StrEnum):
    FCM = "fcm"
    WEB_PUSH = "web_push"
    APP_BEACON = "app_beacon"
    WIFI_MAC = "wifi_mac"


#: Kinds that are presence identifiers (stored as pseudonyms), not delivery addresses.
LINKABLE_KINDS = frozenset({DeviceKind.APP_BEACON, DeviceKind.WIFI_MAC})


class CustomerBase(SQLModel):
    external_id: ExternalId | None = Field(
        default=None, max_length=128, description="the shop's own customer id"
    )
    email: Email | None = Field(default=None, max_length=254)
    phone: Phone | None = Field(default=None, max_length=16)
    first_name: BoundedText | None = Field(default=None, max_length=100)
    last_name: BoundedText | None = Field(default=None, max_length=100)
    birth_date: DbDate | None = None
    locale: Locale | None = Field(default=None, max_length=16)
    time_zone: TimeZone | None = Field(
        default=None, max_length=64,
        description="IANA zone: quiet hours and dates (birthdays) follow the customer's clock",
    )
    attributes: dict[AttributeName, AttributeValue] = Field(
        default_factory=dict, sa_type=JSON, max_length=MAX_ATTRIBUTES,
        description="profile fields the shop segments on (loyalty tier, favourite category...)",
    )


class Customer(CustomerBase, table=True):
    __tablename__ = "customer"
    __table_args__ = (
        UniqueConstraint("tenant", "external_id", name="uq_customer_external_id"),
        # An index, not a constraint: migration 0023 could add it without rebuilding the
        # table on SQLite.
        Index("uq_customer_public_id", "public_id", unique=True),
        # The back office still names customers by number: SQLite must never hand an
        # erased customer's number out again.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    #: Nullable in the schema only (see migration 0023): every row gets one.
    public_id: str = Field(default_factory=new_public_id, max_length=40, nullable=True)
    tenant: str = Field(max_length=64, index=True)
    #: An installation of the shop's app that nobody signed in to yet (made with an app
    #: key alone): its public id is all that reaches it, until a signed-in customer
    #: claims it (`cloud.customers.crud.claim_installation`).
    anonymous: bool = False
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class CustomerCreate(CustomerBase):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]


class SignUp(CustomerCreate):
    """What the shop's app sends at sign-up: the profile, and the anonymous installation
    it made before its user signed in, to be merged into the customer."""

    model_config = ConfigDict(json_schema_extra=example(
        {"external_id": "juan-42", "email": "juan@example.com", "first_name": "Juan",
         "locale": "es-ES", "time_zone": "Europe/Madrid",
         "attributes": {"loyalty_tier": "silver"}},
        {"locale": "es-ES", "time_zone": "Europe/Madrid"},
    ))

    installation_id: BoundedText | None = Field(
        default=None, max_length=40,
        description="the id of the anonymous installation this app made before its user "
        "signed in: its devices and consent answers move to the customer",
    )


#: The fields an anonymous installation may carry: facts about the phone, nobody's name.
ANONYMOUS_FIELDS = frozenset({"locale", "time_zone"})


class CustomerPublic(CustomerBase):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"id": CUSTOMER_ID, "tenant": "acme", "anonymous": False, "external_id": "juan-42",
         "email": "juan@example.com", "phone": None, "first_name": "Juan", "last_name": None,
         "birth_date": "1988-04-12", "locale": "es-ES", "time_zone": "Europe/Madrid",
         "attributes": {"loyalty_tier": "silver"}, "created_at": "2026-12-01T18:02:00Z",
         "updated_at": "2026-12-07T09:30:00Z"},
    ))

    id: str = Field(description="the customer's public id (cus_...)")
    tenant: str
    anonymous: bool
    created_at: datetime
    updated_at: datetime


class ConsentBase(SQLModel):
    #: What the answer is about: a delivery channel's consent (being contacted on it), or
    #: `location_marketing` (using in-store presence for marketing at all); see
    #: `cloud.channels.consent_kinds`.
    channel: str = Field(sa_type=String(32))
    granted: bool
    source: Source = Field(
        max_length=64,
        description="where the answer was given: app, web, store, newsletter-form...",
    )


class ConsentEntry(ConsentBase, table=True):
    __tablename__ = "consent"
    __table_args__ = (Index("ix_consent_customer_channel", "customer_id", "channel", "given_at"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(
        sa_column=Column(Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=False)
    )
    given_at: datetime = Field(sa_type=UtcDateTime)
    recorded_at: datetime = Field(sa_type=UtcDateTime)


class ConsentCreate(ConsentBase):
    model_config = ConfigDict(extra="forbid", json_schema_extra=example(  # type: ignore[assignment]
        {"channel": "push", "granted": True, "source": "app", "given_at": "2026-12-07T09:30:00Z"},
    ))

    channel: ConsentKind = Field(max_length=32)

    given_at: DbDatetime | None = Field(
        default=None, description="when the customer answered; defaults to now"
    )


class ConsentPublic(ConsentBase):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"id": 12, "customer_id": CUSTOMER_ID, "channel": "push", "granted": True,
         "source": "app", "given_at": "2026-12-07T09:30:00Z",
         "recorded_at": "2026-12-07T09:30:01Z"},
    ))

    id: int
    customer_id: str = Field(description="the customer's public id")
    given_at: datetime
    recorded_at: datetime


class Device(SQLModel, table=True):
    """A registration: a delivery address (FCM token, Web Push subscription) or a
    presence identifier (then `token` is empty and the identity lives in IdentityLink)."""

    __tablename__ = "device"
    __table_args__ = (
        UniqueConstraint("tenant", "kind", "token", name="uq_device_token"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    customer_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    kind: DeviceKind = Field(sa_type=String(16))
    token: str | None = Field(default=None, sa_type=Text)
    web_push_p256dh: str | None = Field(default=None, max_length=256)
    web_push_auth: str | None = Field(default=None, max_length=64)
    active: bool = True
    registered_at: datetime = Field(sa_type=UtcDateTime)
    deactivated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    deactivation_reason: str | None = Field(default=None, max_length=200)


class DevicePublic(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"id": 88, "customer_id": CUSTOMER_ID, "kind": "fcm", "active": True,
         "registered_at": "2026-12-07T09:31:00Z", "deactivated_at": None,
         "deactivation_reason": None, "pseudonym_key_ids": []},
    ))

    id: int
    customer_id: str = Field(description="the customer's public id")
    kind: DeviceKind
    active: bool
    registered_at: datetime
    deactivated_at: datetime | None
    deactivation_reason: str | None
    pseudonym_key_ids: list[str] = PydanticField(
        default_factory=list, description="keys a presence identifier is linked under"
    )


class IdentityLink(SQLModel, table=True):
    """One pseudonym (under one tenant key) of a device a customer handed over."""

    __tablename__ = "identity_link"
    __table_args__ = (UniqueConstraint("tenant", "pseudonym", name="uq_identity_link_pseudonym"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    pseudonym: str = Field(max_length=64)
    key_id: str = Field(max_length=16)
    device_id: int = Field(
        sa_column=Column(Integer, ForeignKey("device.id", ondelete="CASCADE"), nullable=False)
    )
    customer_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    created_at: datetime = Field(sa_type=UtcDateTime)


class _Registration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FcmRegistration(_Registration):
    model_config = ConfigDict(json_schema_extra=example(
        {"kind": "fcm", "token": "fGx3-example:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"},
    ))

    kind: Literal[DeviceKind.FCM]
    token: str = PydanticField(min_length=16, max_length=4096, pattern=r"^[A-Za-z0-9_:.\-]+$")


class WebPushKeys(_Registration):
    p256dh: str = PydanticField(min_length=16, max_length=256, pattern=r"^[A-Za-z0-9_\-=]+$")
    auth: str = PydanticField(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_\-=]+$")


class WebPushRegistration(_Registration):
    model_config = ConfigDict(json_schema_extra=example(
        {"kind": "web_push",
         "endpoint": "https://fcm.googleapis.com/fcm/send/dpH5lCsTSSM:APA91bHqjZxM0VImWWqDRN7U0a3AB",
         "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-"
                             "Ts1XbjhazAkj7I99e8QcYP7DkM",
                  "auth": "tBHItJI5svbpez7KI4CCXg"}},
    ))

    kind: Literal[DeviceKind.WEB_PUSH]
    endpoint: HttpUrl
    keys: WebPushKeys


class AppBeaconRegistration(_Registration):
    model_config = ConfigDict(json_schema_extra=example(
        {"kind": "app_beacon", "install_id": "6f1c2a9e-4b7d-4e0a-9c3b-2d8e5f7a1b3c"},
    ))

    kind: Literal[DeviceKind.APP_BEACON]
    install_id: str = PydanticField(description="the install id the app's beacon advertises")


class WifiMacRegistration(_Registration):
    model_config = ConfigDict(json_schema_extra=example(
        {"kind": "wifi_mac", "mac": "00:1e:c2:aa:bb:01"},
    ))

    kind: Literal[DeviceKind.WIFI_MAC]
    mac: str = PydanticField(description="the address the store's guest Wi-Fi saw at login")


DeviceRegistration = Annotated[
    FcmRegistration | WebPushRegistration | AppBeaconRegistration | WifiMacRegistration,
    PydanticField(discriminator="kind"),
]



class ErasureRecord(SQLModel, table=True):
    """Proof that an erasure happened, with nothing that identifies whom it erased."""

    __tablename__ = "erasure"

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    erased_at: datetime = Field(sa_type=UtcDateTime)
    counts: dict[str, int] = Field(default_factory=dict, sa_type=JSON)


class ErasurePublic(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"tenant": "acme", "erased_at": "2026-12-07T12:00:00Z",
         "counts": {"devices": 2, "identity_links": 3, "messages": 14, "consent": 4}},
    ))

    tenant: str
    erased_at: datetime
    counts: dict[str, int]
