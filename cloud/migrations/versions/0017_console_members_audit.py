"""Console members and the audit log: accounts (argon2id password hashes), their role in
each tenant, sessions (only the hash of the cookie's token), invitations (only the hash
of the link's token), failed sign-ins by hashed subject, and every configuration change.

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision: str | None = "0015"
branch_labels = None
depends_on = None


def _at(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "member",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        _at("created_at"),
        _at("password_changed_at"),
        sa.UniqueConstraint("email", name="uq_member_email"),
    )
    op.create_table(
        "membership",
        sa.Column("member_id", sa.Integer(), sa.ForeignKey("member.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        _at("created_at"),
    )
    op.create_table(
        "console_session",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("member_id", sa.Integer(), sa.ForeignKey("member.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        _at("created_at"),
        _at("last_seen_at"),
        _at("expires_at"),
    )
    op.create_index("ix_console_session_member", "console_session", ["member_id"])
    op.create_table(
        "invitation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("invited_by", sa.String(254), nullable=False),
        _at("created_at"),
        _at("expires_at"),
        _at("accepted_at", nullable=True),
        _at("revoked_at", nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_invitation_token"),
    )
    op.create_index("ix_invitation_tenant", "invitation", ["tenant"])
    op.create_table(
        "login_failure",
        sa.Column("subject", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        _at("last_at"),
        _at("blocked_until", nullable=True),
    )
    op.create_table(
        "audit_entry",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        _at("at"),
        sa.Column("actor_kind", sa.String(8), nullable=False),
        sa.Column("actor", sa.String(254), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
    )
    op.create_index("ix_audit_entry_tenant", "audit_entry", ["tenant", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_entry_tenant", table_name="audit_entry")
    op.drop_table("audit_entry")
    op.drop_table("login_failure")
    op.drop_index("ix_invitation_tenant", table_name="invitation")
    op.drop_table("invitation")
    op.drop_index("ix_console_session_member", table_name="console_session")
    op.drop_table("console_session")
    op.drop_table("membership")
    op.drop_table("member")
