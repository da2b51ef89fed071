"""`vitrina-cloud customer-tokens`: the keys a shop's backend signs customer tokens with.

`keygen` makes a key pair (the private half is the shop's to keep, in its backend's
secrets, never in the app); `add` registers the public half for a tenant, `list` and
`retire` manage them (audit-logged as made from the command line). `sign` makes a token
the way the shop's backend does, for trying the API by hand and for development: in
production the backend signs with any JWT library (see docs/security.md).
"""

from __future__ import annotations

import getpass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from cloud.audit import record
from cloud.auth.customer_tokens import (
    MAX_TOKEN_LIFETIME,
    DuplicateTokenKeyError,
    TokenKeyError,
    add_token_key,
    generate_key_pair,
    list_token_keys,
    retire_token_key,
    sign_customer_token,
)
from cloud.auth.models import (
    CustomerTokenKey,
    CustomerTokenKeyCreate,
    CustomerTokenKeyPublic,
    TokenAlgorithm,
)
from cloud.cli.common import Verbose, database, load_settings
from cloud.db import utc_now

customer_tokens = typer.Typer(
    help="Customer token keys: the shop's backend signs a short-lived token for its "
    "signed-in user; the app sends it in X-Customer-Token.",
    no_args_is_help=True,
)

Algorithm = Annotated[TokenAlgorithm, typer.Option(help="ES256 (P-256) or EdDSA (Ed25519)")]
Tenant = Annotated[str, typer.Option(help="the tenant the key signs for")]


@customer_tokens.command("keygen")
def keygen(
    private_key: Annotated[Path, typer.Option(
        help="where to write the private key (created readable by its owner only)")],
    algorithm: Algorithm = TokenAlgorithm.ES256,
) -> None:
    """Make a key pair: the private key goes to --private-key, the public key (PEM) to
    standard output, to be registered with `add` or POST .../customer-token-keys."""
    if private_key.exists():
        typer.echo(f"{private_key} exists: not overwriting a key", err=True)
        raise typer.Exit(1)
    private_pem, public_pem = generate_key_pair(algorithm)
    private_key.touch(mode=0o600)
    private_key.write_text(private_pem)
    typer.echo(f"private key written to {private_key}; keep it in the shop's backend",
               err=True)
    typer.echo(public_pem, nl=False)


@customer_tokens.command("add")
def add(
    tenant: Tenant,
    kid: Annotated[str, typer.Option(help="the key id the backend puts in its tokens")],
    public_key: Annotated[Path, typer.Option(help="the public key's PEM file")],
    algorithm: Algorithm = TokenAlgorithm.ES256,
    verbose: Verbose = False,
) -> None:
    """Register a public key for a tenant (alongside its other active keys)."""
    settings = load_settings(verbose)
    if settings.tenant(tenant) is None:
        typer.echo(f"tenant {tenant!r} is not configured (VITRINA_TENANTS)", err=True)
        raise typer.Exit(2)
    try:
        data = CustomerTokenKeyCreate(kid=kid, algorithm=algorithm,
                                      public_key_pem=public_key.read_text())
    except ValueError as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(2) from None
    with database(settings, needs_table=CustomerTokenKey.__tablename__) as session:
        try:
            row = add_token_key(session, tenant=tenant, data=data,
                                created_by=f"cli:{getpass.getuser()}", now=utc_now())
        except (TokenKeyError, DuplicateTokenKeyError) as error:
            typer.echo(f"refused: {error}", err=True)
            raise typer.Exit(2) from None
        _audit(session, tenant=tenant, action="token_key.create", row=row)
        session.commit()
    typer.echo(f"registered {algorithm.value} key {kid} for tenant {tenant}")


@customer_tokens.command("list")
def list_keys(tenant: Tenant, verbose: Verbose = False) -> None:
    """The tenant's keys: kid, algorithm, when registered and retired."""
    settings = load_settings(verbose)
    with database(settings, needs_table=CustomerTokenKey.__tablename__) as session:
        rows = list_token_keys(session, tenant=tenant)
    typer.echo(f"{'KID':<24}  {'ALG':<6}  {'CREATED':<16}  RETIRED")
    for row in rows:
        typer.echo(f"{row.kid:<24}  {row.algorithm:<6}  {_when(row.created_at):<16}  "
                   f"{_when(row.retired_at)}")


@customer_tokens.command("retire")
def retire(
    tenant: Tenant,
    kid: Annotated[str, typer.Argument(help="the key id to retire")],
    verbose: Verbose = False,
) -> None:
    """Retire a key: tokens signed with it are refused from now on."""
    settings = load_settings(verbose)
    with database(settings, needs_table=CustomerTokenKey.__tablename__) as session:
        row = retire_token_key(session, tenant=tenant, kid=kid, now=utc_now())
        if row is None:
            typer.echo(f"tenant {tenant!r} has no key {kid!r}", err=True)
            raise typer.Exit(1)
        _audit(session, tenant=tenant, action="token_key.retire", row=row)
        session.commit()
    typer.echo(f"retired key {kid} of tenant {tenant}")


@customer_tokens.command("sign")
def sign(
    tenant: Tenant,
    kid: Annotated[str, typer.Option(help="the registered key id")],
    private_key: Annotated[Path, typer.Option(help="the private key's PEM file")],
    subject: Annotated[str, typer.Option(help="the shop's id of its user (external_id)")],
    algorithm: Algorithm = TokenAlgorithm.ES256,
    minutes: Annotated[int, typer.Option(
        min=1, max=int(MAX_TOKEN_LIFETIME.total_seconds() // 60),
        help="how long the token lives")] = 15,
) -> None:
    """Print a customer token, as the shop's backend makes one (for development)."""
    try:
        token = sign_customer_token(
            private_key_pem=private_key.read_text(), algorithm=algorithm, kid=kid,
            tenant=tenant, subject=subject, now=utc_now(), lifetime=timedelta(minutes=minutes),
        )
    except (ValueError, TypeError) as error:
        typer.echo(f"cannot sign: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(token)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def _audit(session: Session, *, tenant: str, action: str, row: CustomerTokenKey) -> None:
    record(session, tenant=tenant, actor_kind="cli", actor=getpass.getuser(), action=action,
           target=f"token_key:{row.kid}", before=None,
           after=CustomerTokenKeyPublic.model_validate(row), now=utc_now())
