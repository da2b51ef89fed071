"""The customer token parser: whatever arrives in X-Customer-Token, the answer is claims
or a CustomerTokenError (a 401), never another exception (a 500)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.auth.customer_tokens import (
    MAX_TOKEN_CHARS,
    CustomerTokenError,
    TokenKeyError,
    load_public_key,
    verify_customer_token,
)
from cloud.auth.models import TokenAlgorithm
from cloud.db import session_scope
from tests.cloud.factories import register_shop_backend
from tests.support.shop_backend import ShopBackend

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TENANT = "shop"
KID = "shop-key-1"
#: Shared by the examples of a test: hypothesis calls the test many times per fixture.
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def backend(sqlite_engine: Engine) -> ShopBackend:
    return register_shop_backend(sqlite_engine, tenant=TENANT, kid=KID)


def verify(session: Session, token: str) -> object:
    """The claims, or the refusal (any other exception fails the test)."""
    try:
        return verify_customer_token(session, tenant=TENANT, token=token, now=NOW)
    except CustomerTokenError as error:
        refusal = error
    assert str(refusal), "a refusal says why"
    return refusal


def segment(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)
headers = st.fixed_dictionaries(
    {"alg": st.sampled_from(["ES256", "EdDSA", "none", "HS256", "RS256", "", None, 7])},
    optional={"kid": st.sampled_from([KID, "unknown", "", None, 3, [KID]]),
              "typ": json_values, "crit": json_values, "b64": json_values},
)
claim_sets = st.fixed_dictionaries(
    {},
    optional={
        "sub": st.one_of(st.just("juan"), st.text(max_size=200), json_values),
        "aud": st.one_of(st.just(TENANT), st.lists(st.just(TENANT), max_size=2), json_values),
        "iat": st.one_of(st.integers(-2**70, 2**70), st.floats(), json_values),
        "exp": st.one_of(st.integers(-2**70, 2**70), st.floats(), json_values),
        "nbf": st.one_of(st.integers(-2**70, 2**70), st.floats(), json_values),
    },
)


@FUZZ
@given(token=st.text(max_size=MAX_TOKEN_CHARS + 10))
def test_any_text_is_refused_cleanly(sqlite_engine: Engine, backend: ShopBackend,
                                     token: str) -> None:
    with session_scope(sqlite_engine) as session:
        assert isinstance(verify(session, token), CustomerTokenError)


@FUZZ
@given(header=headers, claims=claim_sets, signature=st.binary(max_size=80))
def test_any_hand_made_jwt_is_refused_cleanly(
    sqlite_engine: Engine, backend: ShopBackend, header: dict[str, Any],
    claims: dict[str, Any], signature: bytes,
) -> None:
    token = ".".join([segment(header), segment(claims), segment(signature)])
    with session_scope(sqlite_engine) as session:
        assert isinstance(verify(session, token), CustomerTokenError)


@FUZZ
@given(data=st.data())
def test_a_valid_token_changed_anywhere_is_refused_cleanly(
    sqlite_engine: Engine, backend: ShopBackend, data: st.DataObject
) -> None:
    token = backend.token("juan", now=NOW, lifetime=timedelta(minutes=10))
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != token[position]))
    changed = token[:position] + replacement + token[position + 1:]
    with session_scope(sqlite_engine) as session:
        outcome = verify(session, changed)
    # Base64 padding bits may absorb a change to a last character: then it is the same token.
    if not isinstance(outcome, CustomerTokenError):
        assert base64.urlsafe_b64decode(changed.split(".")[2] + "==") == (
            base64.urlsafe_b64decode(token.split(".")[2] + "=="))


def test_the_unchanged_token_verifies(sqlite_engine: Engine, backend: ShopBackend) -> None:
    with session_scope(sqlite_engine) as session:
        claims = verify_customer_token(session, tenant=TENANT, now=NOW,
                                       token=backend.token("juan", now=NOW))
    assert (claims.subject, claims.kid) == ("juan", KID)
    assert claims.expires_at == NOW + timedelta(hours=1)


@pytest.mark.parametrize("algorithm", list(TokenAlgorithm))
def test_keys_of_the_other_algorithm_or_curve_are_refused(algorithm: TokenAlgorithm) -> None:
    other = (TokenAlgorithm.EDDSA if algorithm is TokenAlgorithm.ES256
             else TokenAlgorithm.ES256)
    pem = ShopBackend.new(TENANT, algorithm=other).public_key_pem
    with pytest.raises(TokenKeyError, match=f"cannot verify {algorithm.value}"):
        load_public_key(pem=pem, algorithm=algorithm)
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    if algorithm is TokenAlgorithm.ES256:
        with pytest.raises(TokenKeyError, match="P-256"):
            load_public_key(pem=p384, algorithm=algorithm)
