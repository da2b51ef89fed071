"""The audit log: every change to a tenant's configuration, who made it, when, and what
it was before and after.

Written in the transaction of the change itself, so a change and its entry commit (or
roll back) together, whether a console member or an API key made it. Values are the
public form of what changed (never a secret: keys and invitations appear by id and name,
passwords not at all).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, Index
from sqlmodel import Field, Session, SQLModel, col, select

from cloud.db import UtcDateTime
from cloud.examples import example

#: A before/after value past this many characters of JSON is cut to a summary: a large
#: template must not turn the log into a copy of every version of it.
MAX_VALUE_CHARS = 100_000


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_tenant", "tenant", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    at: datetime = Field(sa_type=UtcDateTime)
    #: "key" or "member".
    actor_kind: str = Field(max_length=8)
    #: The key id, or the member's email address.
    actor: str = Field(max_length=254)
    #: What was done: "<thing>.<verb>", e.g. "offer.put", "member.invite".
    action: str = Field(max_length=64)
    #: What it was done to, e.g. "offer:dryers-20".
    target: str = Field(max_length=200)
    before: Any = Field(default=None, sa_type=JSON, nullable=True)
    after: Any = Field(default=None, sa_type=JSON, nullable=True)


class AuditEntryPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"id": 1042, "at": "2026-12-07T08:30:00Z", "actor_kind": "member",
         "actor": "marta@acme.example", "action": "scenario.put",
         "target": "scenario:cart-reminder", "before": {"version": 2}, "after": {"version": 3}},
    ))

    id: int
    at: datetime
    actor_kind: str
    actor: str
    action: str
    target: str
    before: Any
    after: Any


def _value(value: Any) -> Any:
    """The JSON form of a before/after value, cut to a summary when too large."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    text = json.dumps(value, default=str)
    if len(text) > MAX_VALUE_CHARS:
        return {"truncated": True, "chars": len(text)}
    return json.loads(text)


def record(
    session: Session, *, tenant: str, actor_kind: str, actor: str, action: str, target: str,
    before: Any, after: Any, now: datetime,
) -> AuditEntry:
    """Log one change in the caller's transaction."""
    entry = AuditEntry(
        tenant=tenant, at=now, actor_kind=actor_kind, actor=actor[:254], action=action[:64],
        target=target[:200], before=_value(before), after=_value(after),
    )
    session.add(entry)
    session.flush()
    return entry


def entries(
    session: Session, *, tenant: str, limit: int, before_id: int | None = None,
    action: str | None = None,
) -> Sequence[AuditEntry]:
    """The newest entries first; `before_id` pages back, `action` filters by prefix."""
    query = select(AuditEntry).where(AuditEntry.tenant == tenant)
    if before_id is not None:
        query = query.where(col(AuditEntry.id) < before_id)
    if action is not None:
        query = query.where(col(AuditEntry.action).startswith(action))
    return session.exec(query.order_by(col(AuditEntry.id).desc()).limit(limit)).all()
