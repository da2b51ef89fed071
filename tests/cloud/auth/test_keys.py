"""API keys as stored: their shape, what the table keeps, and how a presented key is judged."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from cloud.auth.keys import (
    KEY_PATTERN,
    LAST_USED_RESOLUTION,
    AuthenticationError,
    Principal,
    authenticate,
    create_key,
    find_key,
    generate_key,
    hash_key,
    key_id_of,
    list_keys,
    revoke_key,
)
from cloud.auth.models import ApiKey, Role
from cloud.db import session_scope

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def secret_of(key: str) -> str:
    return key.split("_", 2)[2]


def make(engine: Engine, role: Role, tenant: str | None, *, name: str = "") -> tuple[str, str]:
    with session_scope(engine) as session:
        row, key = create_key(
            session, role=role, tenant=tenant, name=name, created_by="cli", now=NOW
        )
        session.commit()
        return row.key_id, key


def check(engine: Engine, key: str, *, at: datetime = NOW, operator_hash: str | None = None
          ) -> Principal:
    with session_scope(engine) as session:
        return authenticate(session, key=key, now=at, operator_key_hash=operator_hash)


def stored(engine: Engine, key_id: str) -> ApiKey:
    with session_scope(engine) as session:
        row = find_key(session, key_id=key_id)
        assert row is not None
        return row


def every_row(engine: Engine) -> str:
    with engine.connect() as connection:
        return "\n".join(
            repr(tuple(row)) for table in inspect(connection).get_table_names()
            for row in connection.execute(text(f'SELECT * FROM "{table}"'))
        )


def test_a_key_has_its_documented_shape_and_is_random() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        match = KEY_PATTERN.fullmatch(key)
        assert match is not None, key
        assert key_id_of(key) == match.group("key_id") == key[3:15]
    assert len({key_id_of(key) for key in keys}) == 200
    assert hash_key("vk_x") == hashlib.sha256(b"vk_x").hexdigest()


@pytest.mark.parametrize("text_", [
    "", "vk_", "Bearer vk_0123456789ab_" + "a" * 43, "vk_0123456789AB_" + "a" * 43,
    "vk_0123456789ab_" + "a" * 42, "vk_0123456789ab_" + "a" * 44, "vk_0123456789ab_" + "+" * 43,
    "sk_0123456789ab_" + "a" * 43, "vk_0123456789ab_" + "a" * 43 + "\n",
])
def test_anything_else_is_not_a_key(text_: str) -> None:
    assert key_id_of(text_) is None


def test_only_the_hash_is_stored(engine: Engine, tenant: str) -> None:
    made = [make(engine, Role.ADMIN, tenant, name="back office"), make(engine, Role.APP, tenant),
            make(engine, Role.OPERATOR, None)]
    dump = every_row(engine)
    for key_id, key in made:
        assert stored(engine, key_id).secret_hash == hash_key(key)
        assert hash_key(key) in dump  # the scan does see the rows
        assert key not in dump
        assert secret_of(key) not in dump
        assert secret_of(key)[:16] not in dump


def test_a_stored_key_authenticates_as_its_role_and_tenant(engine: Engine, tenant: str) -> None:
    admin_id, admin = make(engine, Role.ADMIN, tenant)
    app_id, app = make(engine, Role.APP, tenant)
    operator_id, operator = make(engine, Role.OPERATOR, None)
    assert check(engine, admin) == Principal(key_id=admin_id, role=Role.ADMIN, tenant=tenant)
    assert check(engine, app) == Principal(key_id=app_id, role=Role.APP, tenant=tenant)
    assert check(engine, operator) == Principal(operator_id, Role.OPERATOR, None)


def test_last_use_is_recorded_at_most_once_per_resolution(engine: Engine, tenant: str) -> None:
    key_id, key = make(engine, Role.APP, tenant)
    assert stored(engine, key_id).last_used_at is None
    check(engine, key)
    assert stored(engine, key_id).last_used_at == NOW
    check(engine, key, at=NOW + LAST_USED_RESOLUTION / 2)
    assert stored(engine, key_id).last_used_at == NOW
    later = NOW + LAST_USED_RESOLUTION + timedelta(seconds=1)
    check(engine, key, at=later)
    assert stored(engine, key_id).last_used_at == later
    assert stored(engine, key_id).created_at == NOW


def test_refusals_carry_a_reason_and_a_message_that_does_not_tell_them_apart(
    engine: Engine, tenant: str
) -> None:
    key_id, _key = make(engine, Role.ADMIN, tenant)
    wrong_secret = f"vk_{key_id}_{generate_key().split('_', 2)[2]}"
    cases = {
        "malformed": "not-a-key",
        "unknown": generate_key(),
        "mismatch": wrong_secret,
    }
    for reason, presented in cases.items():
        with pytest.raises(AuthenticationError) as refused:
            check(engine, presented)
        assert refused.value.reason == reason
        assert str(refused.value) == "invalid API key"
        assert presented not in str(refused.value)


def test_a_revoked_key_is_refused_and_revoking_again_keeps_the_first_time(
    engine: Engine, tenant: str
) -> None:
    key_id, key = make(engine, Role.ADMIN, tenant)
    with session_scope(engine) as session:
        assert revoke_key(session, key_id=key_id, tenant="another", now=NOW) is None
        assert revoke_key(session, key_id="0123456789ab", now=NOW) is None
        first = revoke_key(session, key_id=key_id, tenant=tenant, now=NOW)
        again = revoke_key(session, key_id=key_id, now=NOW + timedelta(hours=1))
        session.commit()
    assert first is not None
    assert again is not None
    assert again.revoked_at == NOW
    with pytest.raises(AuthenticationError, match="revoked") as refused:
        check(engine, key)
    assert refused.value.reason == "revoked"
    # Somebody who knows only the id is not told that it was revoked.
    with pytest.raises(AuthenticationError, match="invalid API key"):
        check(engine, f"vk_{key_id}_{'A' * 43}")


def test_the_operator_key_from_settings_needs_no_row(engine: Engine) -> None:
    key = generate_key()
    principal = check(engine, key, operator_hash=hash_key(key))
    assert principal == Principal(key_id=key_id_of(key) or "", role=Role.OPERATOR, tenant=None)
    with pytest.raises(AuthenticationError) as refused:
        check(engine, generate_key(), operator_hash=hash_key(key))
    assert refused.value.reason == "unknown"
    with session_scope(engine) as session:
        assert list_keys(session) == []  # nothing was written


@pytest.mark.parametrize(("role", "tenant", "message"), [
    (Role.ADMIN, None, "an admin key needs a tenant"),
    (Role.APP, None, "an app key needs a tenant"),
    (Role.OPERATOR, "acme", "an operator key belongs to no tenant"),
])
def test_tenant_roles_need_a_tenant_and_operators_none(
    engine: Engine, role: Role, tenant: str | None, message: str
) -> None:
    with session_scope(engine) as session, pytest.raises(ValueError, match=message):
        create_key(session, role=role, tenant=tenant, created_by="cli", now=NOW)


def test_the_database_enforces_the_same_rule(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(ApiKey(
            key_id="0123456789ab", tenant="acme", role=Role.OPERATOR, secret_hash="0" * 64,
            created_at=NOW, created_by="cli",
        ))
        with pytest.raises(IntegrityError):
            session.commit()


def test_listing_by_tenant_and_all(engine: Engine, tenant: str) -> None:
    first, _ = make(engine, Role.ADMIN, tenant)
    second, _ = make(engine, Role.APP, tenant)
    other, _ = make(engine, Role.ADMIN, "another")
    operator, _ = make(engine, Role.OPERATOR, None)
    with session_scope(engine) as session:
        assert [row.key_id for row in list_keys(session, tenant=tenant)] == [first, second]
        assert [row.key_id for row in list_keys(session)] == [first, second, other, operator]
