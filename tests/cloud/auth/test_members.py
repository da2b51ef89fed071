"""Console members as stored: accounts, roles per tenant, the last owner, signing in,
password changes and invitations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from cloud.auth import members, throttle
from cloud.auth.members import MemberError, SignInBlockedError, SignInRefusedError
from cloud.auth.models import Member
from cloud.auth.permissions import MemberRole
from cloud.auth.sessions import SessionPolicy, find_session, token_hash
from cloud.db import session_scope

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
POLICY = SessionPolicy()
LIMITS = throttle.Throttle(free=2, window=timedelta(minutes=15),
                           base=timedelta(seconds=30), cap=timedelta(minutes=30))


def account(session: Session, email: str = "Ana@Shop.example") -> Member:
    return members.create_member(session, email=email, password=PASSWORD, name="Ana", now=NOW)


def sign_in(session: Session, password: str, *, email: str = "ana@shop.example",
            client: str = "203.0.113.9", at: datetime = NOW) -> str:
    signed = members.sign_in(
        session, email=email, password=password, client=client, now=at, policy=POLICY,
        limits=LIMITS,
    )
    session.commit()
    return signed.token


def test_addresses_are_kept_lower_case_and_taken_once(engine: Engine) -> None:
    with session_scope(engine) as session:
        member = account(session)
        assert member.email == "ana@shop.example"
        assert members.find_member(session, email=" ANA@shop.EXAMPLE ") is member
        with pytest.raises(MemberError, match="has an account already"):
            account(session, "ana@SHOP.example")
    with engine.connect() as connection:
        assert PASSWORD not in repr(connection.execute(text("SELECT * FROM member")).all())


def test_roles_are_per_tenant_and_a_tenant_keeps_an_owner(engine: Engine) -> None:
    with session_scope(engine) as session:
        ana, bo = account(session), account(session, "bo@shop.example")
        assert ana.id is not None
        assert bo.id is not None
        members.grant(session, member=ana, tenant="shop", role=MemberRole.OWNER, now=NOW)
        members.grant(session, member=ana, tenant="other", role=MemberRole.ANALYST, now=NOW)
        assert members.role_in(session, member_id=ana.id, tenant="shop") is MemberRole.OWNER
        assert members.role_in(session, member_id=ana.id, tenant="other") is MemberRole.ANALYST
        assert members.role_in(session, member_id=ana.id, tenant="third") is None
        with pytest.raises(MemberError, match="last owner"):
            members.grant(session, member=ana, tenant="shop", role=MemberRole.MARKETER, now=NOW)
        with pytest.raises(MemberError, match="last owner"):
            members.remove(session, member_id=ana.id, tenant="shop")
        members.grant(session, member=bo, tenant="shop", role=MemberRole.OWNER, now=NOW)
        members.grant(session, member=ana, tenant="shop", role=MemberRole.MARKETER, now=NOW)
        assert members.remove(session, member_id=ana.id, tenant="shop") is not None
        assert members.remove(session, member_id=ana.id, tenant="shop") is None
        assert [m.tenant for m in members.memberships(session, member_id=ana.id)] == ["other"]
        assert [m.email for m, _ in members.tenant_members(session, tenant="shop")] == [
            "bo@shop.example"]


def test_signing_in_opens_a_session_and_a_wrong_password_is_refused(engine: Engine) -> None:
    with session_scope(engine) as session:
        account(session)
        session.commit()
        token = sign_in(session, PASSWORD, email="ANA@shop.example")
        assert find_session(session, token=token, now=NOW, policy=POLICY) is not None
        with pytest.raises(SignInRefusedError):
            sign_in(session, "not the password")
        with pytest.raises(SignInRefusedError):
            sign_in(session, PASSWORD, email="nobody@shop.example")


def test_repeated_failures_block_even_the_right_password(engine: Engine) -> None:
    with session_scope(engine) as session:
        account(session)
        session.commit()
        for _ in range(3):
            with pytest.raises(SignInRefusedError):
                sign_in(session, "a guess at it")
        with pytest.raises(SignInBlockedError) as blocked:
            sign_in(session, PASSWORD, client="198.51.100.7")  # the account is blocked
        assert blocked.value.retry_after == timedelta(seconds=30)
        with pytest.raises(SignInBlockedError):  # and so is the client, for any account
            sign_in(session, PASSWORD, email="bo@shop.example")
        sign_in(session, PASSWORD, at=NOW + timedelta(seconds=30))
        # Success clears the account's count: two more free failures from elsewhere.
        for _ in range(2):
            with pytest.raises(SignInRefusedError):
                sign_in(session, "a guess at it", client="198.51.100.7",
                        at=NOW + timedelta(seconds=31))


def test_failures_count_even_when_the_caller_rolls_back(engine: Engine) -> None:
    with session_scope(engine) as session, pytest.raises(SignInRefusedError):
        sign_in(session, "a guess", email="nobody@shop.example")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM login_failure")).scalar() == 2


def test_a_password_change_needs_the_current_one_and_ends_the_other_sessions(
    engine: Engine,
) -> None:
    with session_scope(engine) as session:
        ana = account(session)
        session.commit()
        here, elsewhere = sign_in(session, PASSWORD), sign_in(session, PASSWORD)
        with pytest.raises(MemberError, match="does not match"):
            members.change_password(session, member=ana, current="wrong", new="x" * 12,
                                    keep_session=token_hash(here), now=NOW)
        with pytest.raises(MemberError, match="is the current one"):
            members.change_password(session, member=ana, current=PASSWORD, new=PASSWORD,
                                    keep_session=token_hash(here), now=NOW)
        assert members.change_password(
            session, member=ana, current=PASSWORD, new="a brand new pass phrase",
            keep_session=token_hash(here), now=NOW,
        ) == 1
        session.commit()
        assert find_session(session, token=here, now=NOW, policy=POLICY) is not None
        assert find_session(session, token=elsewhere, now=NOW, policy=POLICY) is None
        with pytest.raises(SignInRefusedError):
            sign_in(session, PASSWORD)
        sign_in(session, "a brand new pass phrase")


def test_an_invitation_is_used_once_by_its_address_before_it_expires(engine: Engine) -> None:
    with session_scope(engine) as session:
        invitation, token = members.invite(
            session, tenant="shop", email="Bo@Shop.example", role=MemberRole.MARKETER,
            invited_by="ana@shop.example", now=NOW, valid_for=timedelta(days=7),
        )
        assert token not in repr(invitation.model_dump())
        assert members.pending_invitations(session, tenant="shop", now=NOW) == [invitation]
        with pytest.raises(MemberError, match="not valid"):
            members.open_invitation(session, token=token, now=NOW + timedelta(days=7))
        with pytest.raises(MemberError, match="not valid"):
            members.open_invitation(session, token="a-guess", now=NOW)
        opened = members.open_invitation(session, token=token, now=NOW)
        with pytest.raises(MemberError, match="another address"):
            members.accept(session, invitation=opened, member=account(session), now=NOW)
        bo = account(session, "bo@shop.example")
        members.accept(session, invitation=opened, member=bo, now=NOW)
        assert bo.id is not None
        assert members.role_in(session, member_id=bo.id, tenant="shop") is MemberRole.MARKETER
        with pytest.raises(MemberError, match="not valid"):
            members.open_invitation(session, token=token, now=NOW)
        assert members.pending_invitations(session, tenant="shop", now=NOW) == []


def test_a_withdrawn_invitation_cannot_be_used_and_other_tenants_cannot_withdraw_it(
    engine: Engine,
) -> None:
    with session_scope(engine) as session:
        invitation, token = members.invite(
            session, tenant="shop", email="bo@shop.example", role=MemberRole.ANALYST,
            invited_by="ana@shop.example", now=NOW, valid_for=timedelta(days=7),
        )
        assert invitation.id is not None
        assert members.revoke_invitation(session, tenant="other", invitation_id=invitation.id,
                                         now=NOW) is None
        assert members.revoke_invitation(session, tenant="shop", invitation_id=invitation.id,
                                         now=NOW) is invitation
        with pytest.raises(MemberError, match="not valid"):
            members.open_invitation(session, token=token, now=NOW)
