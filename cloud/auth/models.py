"""API keys: who may call the orchestrator's HTTP API, for which tenant, in which role.

Roles, from most to least trusted:
- `operator`: runs the deployment; cross-tenant operations (dead letters, issuing keys for
  any tenant). It holds no tenant, and it does not read tenant data: customer data is
  reached with that tenant's own keys, so every such access is attributable to the tenant.
- `admin`: the shop's back office; everything of its tenant.
- `app`: the shop's mobile app and web shop, acting for the shopper in front of it. An app
  key ships inside an app or a web page, so it must be assumed extractable: it can only
  sign a customer up, record consent, register devices and read back that customer's
  consent and devices, nothing that lists the tenant or reveals a profile.

A key row keeps only the SHA-256 of the key (see `cloud.auth.keys`), never the key itself.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import ConfigDict, StringConstraints
from sqlalchemy import CheckConstraint, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from cloud.db import UtcDateTime
from cloud.examples import PUBLIC_KEY_PEM, example

#: Printable text only: names show up in listings and terminals.
KEY_NAME_PATTERN = r"^[^\x00-\x1f\x7f]*$"
KeyName = Annotated[str, StringConstraints(pattern=KEY_NAME_PATTERN, max_length=100)]


class Role(StrEnum):
    OPERATOR = "operator"
    ADMIN = "admin"
    APP = "app"


#: The roles a tenant's admin may hand out; operator keys come only from the command line.
TenantRole = Literal[Role.ADMIN, Role.APP]


class ApiKeyBase(SQLModel):
    role: Role = Field(sa_type=String(16))
    name: KeyName = Field(
        default="", max_length=100, description="what the key is for: 'android app', 'CRM sync'"
    )


class ApiKey(ApiKeyBase, table=True):
    __tablename__ = "api_key"
    __table_args__ = (
        UniqueConstraint("key_id", name="uq_api_key_key_id"),
        CheckConstraint(
            "(role = 'operator' AND tenant IS NULL) OR (role <> 'operator' AND tenant IS NOT NULL)",
            name="ck_api_key_tenant_role",
        ),
        Index("ix_api_key_tenant", "tenant"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key_id: str = Field(max_length=16, description="public part of the key; finds the row")
    tenant: str | None = Field(default=None, max_length=64)
    secret_hash: str = Field(max_length=64, description="SHA-256 (hex) of the whole key")
    created_at: datetime = Field(sa_type=UtcDateTime)
    created_by: str = Field(max_length=64, description="'cli', or the key id that issued it")
    last_used_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class ApiKeyCreate(SQLModel):
    """What a tenant admin asks for; the tenant is the one in the path."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=example(  # type: ignore[assignment]
        {"role": "app", "name": "Android app 4.2"},
    ))

    role: TenantRole
    name: KeyName = ""


class ApiKeyPublic(ApiKeyBase):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"role": "app", "name": "Android app 4.2", "key_id": "k_8f3a2c1d", "tenant": "acme",
         "created_at": "2026-12-07T08:00:00Z", "created_by": "marta@acme.example",
         "last_used_at": None, "revoked_at": None},
    ))

    key_id: str
    tenant: str | None
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    model_config = ConfigDict(json_schema_extra=example(
        {"role": "app", "name": "Android app 4.2", "key_id": "k_8f3a2c1d", "tenant": "acme",
         "created_at": "2026-12-07T08:00:00Z", "created_by": "marta@acme.example",
         "last_used_at": None, "revoked_at": None,
         "key": "vk_k_8f3a2c1d.3q2b7Zx0pS1mN4kT9vW6yR8uE5aC2dF7"},
    ))

    key: str = Field(
        description="the key to send as 'Authorization: Bearer <key>'; shown only in this "
        "response and never again (only its hash is stored)"
    )


# --- console members -----------------------------------------------------------------------

#: Deliberately loose, as for customers: this only catches what cannot be an address.
MEMBER_EMAIL_PATTERN = r"^[^@\s\x00]{1,64}@[^@\s\x00]{1,190}\.[^@\s\x00]{1,63}$"
MemberEmail = Annotated[str, StringConstraints(pattern=MEMBER_EMAIL_PATTERN, max_length=254)]
MemberName = Annotated[str, StringConstraints(pattern=KEY_NAME_PATTERN, max_length=100)]
#: Long enough to resist guessing with throttled logins; pass phrases welcome.
MIN_PASSWORD_CHARS = 12
#: argon2 takes any length, but a megabyte of password is an attack, not a password.
MAX_PASSWORD_CHARS = 256
Password = Annotated[
    str, StringConstraints(min_length=MIN_PASSWORD_CHARS, max_length=MAX_PASSWORD_CHARS)
]
#: A password given to sign in: not held to the rules for new ones (an old one must still
#: sign in), only bounded.
PasswordAttempt = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_CHARS)]


class Member(SQLModel, table=True):
    """A person who signs in to the console. Email addresses are stored lower-case."""

    __tablename__ = "member"
    __table_args__ = (UniqueConstraint("email", name="uq_member_email"),)

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254)
    name: str = Field(default="", max_length=100)
    #: argon2id, with its parameters (`cloud.auth.passwords`).
    password_hash: str = Field(max_length=255)
    created_at: datetime = Field(sa_type=UtcDateTime)
    password_changed_at: datetime = Field(sa_type=UtcDateTime)


class Membership(SQLModel, table=True):
    """A member's role in one tenant."""

    __tablename__ = "membership"

    member_id: int = Field(foreign_key="member.id", primary_key=True, ondelete="CASCADE")
    tenant: str = Field(max_length=64, primary_key=True)
    role: str = Field(sa_type=String(16))
    created_at: datetime = Field(sa_type=UtcDateTime)


class ConsoleSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is kept."""

    __tablename__ = "console_session"
    __table_args__ = (Index("ix_console_session_member", "member_id"),)

    token_hash: str = Field(max_length=64, primary_key=True)
    member_id: int = Field(foreign_key="member.id", ondelete="CASCADE")
    #: Sent back by the console with every change it asks for (`X-CSRF-Token`).
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UtcDateTime)
    last_seen_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)


class Invitation(SQLModel, table=True):
    """An invitation to join a tenant in a role; the link holds a random token, only its
    SHA-256 is kept, and it is used once."""

    __tablename__ = "invitation"
    __table_args__ = (
        UniqueConstraint("token_hash", name="uq_invitation_token"),
        Index("ix_invitation_tenant", "tenant"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    email: str = Field(max_length=254)
    role: str = Field(sa_type=String(16))
    token_hash: str = Field(max_length=64)
    invited_by: str = Field(max_length=254)
    created_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    accepted_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class LoginFailure(SQLModel, table=True):
    """Failed attempts (sign-ins, API keys, enrolment codes) counted per subject: an
    account, a key id, a client address (`cloud.auth.throttle`); `subject` is a hash, so
    the table lists no addresses."""

    __tablename__ = "login_failure"
    #: For deleting the rows no throttle counts any more (`throttle.prune`).
    __table_args__ = (Index("ix_login_failure_last_at", "last_at"),)

    subject: str = Field(max_length=64, primary_key=True)
    failures: int
    last_at: datetime = Field(sa_type=UtcDateTime)
    blocked_until: datetime | None = Field(default=None, sa_type=UtcDateTime)


# --- customer token keys ---------------------------------------------------------------------


class TokenAlgorithm(StrEnum):
    """The signatures a customer token may carry: asymmetric only, so that what the
    orchestrator holds (a public key) cannot mint tokens."""

    ES256 = "ES256"
    EDDSA = "EdDSA"


#: A key id as it appears in a token's header: short, printable, no spaces.
TOKEN_KID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
TokenKid = Annotated[str, StringConstraints(pattern=TOKEN_KID_PATTERN)]
#: A PEM public key is a few hundred characters; anything far larger is not one.
MAX_PUBLIC_KEY_PEM_CHARS = 4096


class CustomerTokenKeyBase(SQLModel):
    kid: TokenKid = Field(
        max_length=64, description="the key id the shop puts in its tokens' header ('kid')"
    )
    algorithm: TokenAlgorithm = Field(sa_type=String(8))
    public_key_pem: str = Field(
        sa_type=Text, description="the public key (PEM, SubjectPublicKeyInfo)"
    )


class CustomerTokenKey(CustomerTokenKeyBase, table=True):
    """A public key the shop's backend signs its customer tokens with the private half of.
    Several may be active at once (rotation); a retired key verifies nothing."""

    __tablename__ = "customer_token_key"
    __table_args__ = (UniqueConstraint("tenant", "kid", name="uq_customer_token_key_kid"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UtcDateTime)
    created_by: str = Field(max_length=254)
    retired_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class CustomerTokenKeyCreate(SQLModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=example(  # type: ignore[assignment]
        {"kid": "shop-key-1", "algorithm": "ES256", "public_key_pem": PUBLIC_KEY_PEM},
    ))

    kid: TokenKid
    algorithm: TokenAlgorithm
    public_key_pem: str = Field(max_length=MAX_PUBLIC_KEY_PEM_CHARS)


class CustomerTokenKeyPublic(CustomerTokenKeyBase):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"kid": "shop-key-1", "algorithm": "ES256", "public_key_pem": PUBLIC_KEY_PEM,
         "tenant": "acme", "created_at": "2026-12-07T08:00:00Z",
         "created_by": "marta@acme.example", "retired_at": None},
    ))

    tenant: str
    created_at: datetime
    created_by: str
    retired_at: datetime | None
