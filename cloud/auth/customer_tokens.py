"""Customer tokens: how the shop's app proves which customer it acts for.

An app key ships inside every copy of the shop's app, so it is public: it proves only
that a request comes from (something claiming to be) the shop's app. Which customer is
in front of the app is told by the shop's backend, which knows its user signed in: it
signs a short-lived JWT (a customer token) with a private key it keeps, and registers the
public half here (`add_token_key`). The app sends the token in `X-Customer-Token`; the API
accepts a customer-scoped request from an app key only when the token's subject is the
customer in the path. This is what the push platforms do (Braze's SDK authentication,
Airship's named-user tokens).

A token: header `{"alg": "ES256" | "EdDSA", "kid": <a registered key id>}`, claims
`sub` (the shop's own id of its user, the customer's `external_id`), `aud` (the tenant),
`iat` and `exp` (at most `MAX_TOKEN_LIFETIME` apart). Only asymmetric algorithms are
accepted: what the orchestrator stores cannot mint a token, and `none` or an HMAC keyed
with a public key (the classic confusion attack) is refused before any key is looked up.
Several keys of a tenant may be active at once, so the shop rotates by adding the new
key, signing with it, then retiring the old one.

Every refusal is a `CustomerTokenError`: `reason` for logs and metrics, a message for
the caller that says what to fix without saying anything that helps forging (never which
part of a signature failed, never a key).

Functions take keyword arguments, work in the caller's session and leave committing to
the caller.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cloud.auth.models import CustomerTokenKey, CustomerTokenKeyCreate, TokenAlgorithm

#: The longest a token may live (`exp - iat`). A token that leaks (a log, a crash report)
#: is someone's identity until it expires; the app asks the shop's backend for a new one
#: when it does, which costs one request an hour.
MAX_TOKEN_LIFETIME = timedelta(hours=1)
#: Clocks of the shop's backend, the phone and the orchestrator disagree by seconds;
#: a minute of slack keeps a fresh token from being refused as "not yet issued".
CLOCK_LEEWAY = timedelta(seconds=60)
#: A real token is a few hundred characters; a header past this is not a token, and is
#: not worth parsing.
MAX_TOKEN_CHARS = 4096
#: What `sub` may hold: the shop's external customer id (`cloud.customers.models`).
SUBJECT_PATTERN = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
#: The curves each algorithm's keys must be on.
_KEY_TYPES: dict[TokenAlgorithm, tuple[type, ...]] = {
    TokenAlgorithm.ES256: (ec.EllipticCurvePublicKey,),
    TokenAlgorithm.EDDSA: (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey


class CustomerTokenError(Exception):
    """A customer token that does not prove anything. `reason` is for logs and metrics;
    `str(error)` is what the caller is told."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TokenKeyError(ValueError):
    """A public key that cannot be registered; the message says why."""


@dataclass(frozen=True, slots=True)
class CustomerClaims:
    """What a verified token says: whose it is, under which key, until when."""

    subject: str
    kid: str
    expires_at: datetime


# --- the tenant's keys ------------------------------------------------------------------------


def load_public_key(*, pem: str, algorithm: TokenAlgorithm) -> PublicKey:
    """The key in `pem`, checked to suit `algorithm`; TokenKeyError otherwise."""
    if "PRIVATE KEY" in pem:
        raise TokenKeyError(
            "this is a private key: register only the public half, and since the private "
            "key has now been sent away, make a new pair"
        )
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise TokenKeyError("not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    if not isinstance(key, _KEY_TYPES[algorithm]):
        raise TokenKeyError(f"this key cannot verify {algorithm.value} signatures")
    if isinstance(key, ec.EllipticCurvePublicKey) and not isinstance(key.curve, ec.SECP256R1):
        raise TokenKeyError("ES256 needs a P-256 (secp256r1) key")
    assert isinstance(key, PublicKey)
    return key


class DuplicateTokenKeyError(ValueError):
    """The tenant already has a key with this kid (retired ones included: a kid is never
    reused, so that an old token cannot come back to life under a new key)."""


def add_token_key(
    session: Session, *, tenant: str, data: CustomerTokenKeyCreate, created_by: str,
    now: datetime,
) -> CustomerTokenKey:
    """Register a public key; TokenKeyError for an unusable one, DuplicateTokenKeyError
    for a kid the tenant has had."""
    load_public_key(pem=data.public_key_pem, algorithm=data.algorithm)
    if find_token_key(session, tenant=tenant, kid=data.kid) is not None:
        raise DuplicateTokenKeyError(f"tenant {tenant!r} already has a key {data.kid!r}")
    row = CustomerTokenKey(
        tenant=tenant, kid=data.kid, algorithm=data.algorithm,
        public_key_pem=data.public_key_pem.strip() + "\n", created_at=now,
        created_by=created_by[:254],
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # a concurrent registration of the same kid
        session.rollback()
        raise DuplicateTokenKeyError(f"tenant {tenant!r} already has a key {data.kid!r}") from None
    return row


def find_token_key(session: Session, *, tenant: str, kid: str) -> CustomerTokenKey | None:
    return session.exec(
        select(CustomerTokenKey).where(
            CustomerTokenKey.tenant == tenant, CustomerTokenKey.kid == kid
        )
    ).first()


def list_token_keys(session: Session, *, tenant: str) -> Sequence[CustomerTokenKey]:
    """The tenant's keys, oldest first, retired ones too."""
    return session.exec(
        select(CustomerTokenKey).where(CustomerTokenKey.tenant == tenant)
        .order_by(col(CustomerTokenKey.created_at), col(CustomerTokenKey.id))
    ).all()


def retire_token_key(
    session: Session, *, tenant: str, kid: str, now: datetime
) -> CustomerTokenKey | None:
    """Retire a key: tokens under it are refused from now on. None if there is no such
    key; retiring twice keeps the first time."""
    row = find_token_key(session, tenant=tenant, kid=kid)
    if row is None:
        return None
    if row.retired_at is None:
        row.retired_at = now
        session.add(row)
        session.flush()
    return row


# --- verifying a token ------------------------------------------------------------------------


def verify_customer_token(
    session: Session, *, tenant: str, token: str, now: datetime
) -> CustomerClaims:
    """The claims of a token the tenant's backend signed, or CustomerTokenError.

    Times are checked here against `now` (the API's clock), not by the JWT library
    against the machine's: the tests and the acceptance journey run on a controlled clock.
    """
    header = _header(token)
    algorithm = _algorithm(header)
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise CustomerTokenError("kid", "the customer token's header names no key (kid)")
    row = find_token_key(session, tenant=tenant, kid=kid)
    if row is None:
        raise CustomerTokenError("unknown_kid", "the customer token's key (kid) is not "
                                                "registered for this tenant")
    if row.retired_at is not None and row.retired_at <= now:
        raise CustomerTokenError("retired_kid", "the customer token's key (kid) was retired: "
                                                "sign with a current key")
    if row.algorithm != algorithm:
        raise CustomerTokenError("algorithm", f"the key {kid!r} signs with {row.algorithm}")
    claims = _verified_claims(token, row=row, algorithm=algorithm, tenant=tenant)
    return _timely(claims, kid=kid, now=now)


def _header(token: str) -> dict[str, Any]:
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise CustomerTokenError("malformed", "the customer token is not a JWT")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise CustomerTokenError("malformed", "the customer token is not a JWT") from None
    return header


def _algorithm(header: dict[str, Any]) -> TokenAlgorithm:
    """The header's algorithm, if it is one of ours: `none` and HMAC never reach a key."""
    alg = header.get("alg")
    if alg not in {algorithm.value for algorithm in TokenAlgorithm}:
        raise CustomerTokenError(
            "algorithm", "the customer token must be signed with ES256 or EdDSA"
        )
    return TokenAlgorithm(alg)


def _verified_claims(
    token: str, *, row: CustomerTokenKey, algorithm: TokenAlgorithm, tenant: str
) -> dict[str, Any]:
    key = load_public_key(pem=row.public_key_pem, algorithm=algorithm)
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key=key, algorithms=[algorithm.value], audience=tenant,
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                     "require": ["sub", "aud", "iat", "exp"]},
        )
    except jwt.InvalidSignatureError:
        raise CustomerTokenError("signature", "the customer token's signature does not "
                                              "verify") from None
    except jwt.InvalidAudienceError:
        raise CustomerTokenError("audience", "the customer token is for another tenant "
                                             "(aud)") from None
    except jwt.MissingRequiredClaimError as error:
        raise CustomerTokenError("claims", f"the customer token has no {error.claim!r} "
                                           "claim") from None
    except jwt.InvalidTokenError:
        raise CustomerTokenError("malformed", "the customer token is not a JWT") from None
    return claims


def _timestamp(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise CustomerTokenError("claims", f"the customer token's {name!r} is not a time "
                                           "(seconds since 1970)")
    return float(value)


def _timely(claims: dict[str, Any], *, kid: str, now: datetime) -> CustomerClaims:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not SUBJECT_PATTERN.fullmatch(subject):
        raise CustomerTokenError("claims", "the customer token's 'sub' is not an external "
                                           "customer id")
    issued, expires = _timestamp(claims, "iat"), _timestamp(claims, "exp")
    moment, leeway = now.timestamp(), CLOCK_LEEWAY.total_seconds()
    if issued > moment + leeway:
        raise CustomerTokenError("future", "the customer token is issued in the future "
                                           "(iat): check the signing server's clock")
    if "nbf" in claims and _timestamp(claims, "nbf") > moment + leeway:
        raise CustomerTokenError("future", "the customer token is not valid yet (nbf)")
    if expires <= moment - leeway:
        raise CustomerTokenError("expired", "the customer token has expired: ask the shop "
                                            "for a new one")
    if expires - issued > MAX_TOKEN_LIFETIME.total_seconds():
        raise CustomerTokenError(
            "lifetime", "the customer token lives too long (exp - iat is at most "
                        f"{int(MAX_TOKEN_LIFETIME.total_seconds())} s)"
        )
    return CustomerClaims(subject=subject, kid=kid,
                          expires_at=datetime.fromtimestamp(expires, tz=now.tzinfo))


# --- what the shop's backend does (and tests, the demo, a shop starting out) ------------------


def generate_key_pair(algorithm: TokenAlgorithm) -> tuple[str, str]:
    """A new (private PEM, public PEM) pair for `algorithm`; the private half is the
    shop's to keep, the public half is what it registers."""
    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = (
        ec.generate_private_key(ec.SECP256R1()) if algorithm is TokenAlgorithm.ES256
        else ed25519.Ed25519PrivateKey.generate()
    )
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private_pem, public_pem


def sign_customer_token(
    *, private_key_pem: str, algorithm: TokenAlgorithm, kid: str, tenant: str, subject: str,
    now: datetime, lifetime: timedelta = MAX_TOKEN_LIFETIME,
) -> str:
    """A customer token for `subject`, as a shop's backend makes one."""
    issued = int(now.timestamp())
    private = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise TokenKeyError("not an ES256 (P-256) or EdDSA (Ed25519) private key")
    return jwt.encode(
        {"sub": subject, "aud": tenant, "iat": issued,
         "exp": issued + int(lifetime.total_seconds())},
        private, algorithm=algorithm.value, headers={"kid": kid},
    )
