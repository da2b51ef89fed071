"""`vitrina-cloud members`: console accounts from the command line, chiefly a tenant's
first owner (everyone after is invited from the console), and a new password for a
member who lost theirs.

Passwords are read from standard input (`--password-stdin`, for scripts) or asked for
twice without echo; never taken as an argument, where the shell history and the process
list would keep them. Changes are written to the tenant's audit log as made from the
command line by the system user who ran it.
"""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError
from sqlmodel import Session

from cloud.audit import record
from cloud.auth import members as accounts
from cloud.auth.models import Member, MemberEmail, Password
from cloud.auth.permissions import MemberRole
from cloud.auth.sessions import close_other_sessions
from cloud.cli.common import Verbose, database, load_settings
from cloud.db import utc_now

members = typer.Typer(
    help="Console members: people who sign in to /console with an address and a password.",
    no_args_is_help=True,
)

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="read the password from standard input")
]
_EMAIL: TypeAdapter[str] = TypeAdapter(MemberEmail)
_PASSWORD: TypeAdapter[str] = TypeAdapter(Password)


def _email(value: str) -> str:
    try:
        return accounts.normalize_email(_EMAIL.validate_python(value))
    except ValidationError:
        raise typer.BadParameter(f"{value!r} is not an email address") from None


def _read_password(from_stdin: bool, *, address: str) -> str:
    """A new password, checked against the rules; exit status 2 when it breaks them."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(f"new password for {address}", hide_input=True,
                                confirmation_prompt=True)
    try:
        return _PASSWORD.validate_python(password)
    except ValidationError as error:
        typer.echo(f"password refused: {error.errors()[0]['msg'].lower()}", err=True)
        raise typer.Exit(2) from None


def _audit(session: Session, *, tenant: str, action: str, email: str, after: object) -> None:
    record(session, tenant=tenant, actor_kind="cli", actor=getpass.getuser(), action=action,
           target=f"member:{email}", before=None, after=after, now=utc_now())


@members.command("add")
def members_add(
    email: Annotated[str, typer.Option(help="the member's address (their sign-in)")],
    tenant: Annotated[str, typer.Option(help="the tenant they join")],
    role: Annotated[MemberRole, typer.Option(help="what they may do there")],
    name: Annotated[str, typer.Option(help="how the console names them")] = "",
    password_stdin: PasswordStdin = False,
    verbose: Verbose = False,
) -> None:
    """Give an address a role in a tenant, making its account (and asking for its
    password) when it has none."""
    settings = load_settings(verbose)
    address = _email(email)
    if settings.tenant(tenant) is None:
        typer.echo(f"tenant {tenant!r} is not configured (VITRINA_TENANTS)", err=True)
        raise typer.Exit(2)
    with database(settings, needs_table=Member.__tablename__) as session:
        member = accounts.find_member(session, email=address)
        made = member is None
        if member is None:
            password = _read_password(password_stdin, address=address)
            member = accounts.create_member(session, email=address, name=name, now=utc_now(),
                                            password=password)
        try:
            accounts.grant(session, member=member, tenant=tenant, role=role, now=utc_now())
        except accounts.MemberError as error:
            typer.echo(str(error), err=True)
            raise typer.Exit(1) from None
        _audit(session, tenant=tenant, action="member.add", email=address,
               after={"email": address, "role": role.value})
        session.commit()
    account = "new account" if made else "existing account"
    typer.echo(f"{address} ({account}) is {role.label} of {tenant}; they sign in at "
               f"{settings.tracking.public_base_url.rstrip('/')}/console")


@members.command("list")
def members_list(
    tenant: Annotated[str, typer.Option(help="the tenant whose members to list")],
    verbose: Verbose = False,
) -> None:
    """The tenant's members and their roles."""
    settings = load_settings(verbose)
    with database(settings, needs_table=Member.__tablename__) as session:
        rows = accounts.tenant_members(session, tenant=tenant)
        typer.echo(f"{'EMAIL':<40}  {'ROLE':<15}  NAME")
        for member, membership in rows:
            typer.echo(f"{member.email:<40}  {membership.role:<15}  {member.name}")


@members.command("set-password")
def members_set_password(
    email: Annotated[str, typer.Option(help="the member's address")],
    password_stdin: PasswordStdin = False,
    verbose: Verbose = False,
) -> None:
    """A new password for a member who lost theirs; every session of theirs ends."""
    settings = load_settings(verbose)
    address = _email(email)
    with database(settings, needs_table=Member.__tablename__) as session:
        member = accounts.find_member(session, email=address)
        if member is None:
            typer.echo(f"no member {address!r}", err=True)
            raise typer.Exit(1)
        assert member.id is not None
        password = _read_password(password_stdin, address=address)
        accounts.set_password(session, member=member, new=password, now=utc_now())
        ended = close_other_sessions(session, member_id=member.id, keep=None)
        for membership in accounts.memberships(session, member_id=member.id):
            _audit(session, tenant=membership.tenant, action="member.password", email=address,
                   after={"sessions_ended": ended})
        session.commit()
    typer.echo(f"new password set for {address}; {ended} session(s) ended")
