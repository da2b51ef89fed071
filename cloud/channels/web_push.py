"""Each tenant's VAPID key pair, generated on first use and kept in the database.

Browsers bind a subscription to the public key given at subscribe time, so the key must
outlive every subscription: it is made once, and every worker and API process reads the
same one from the database (a key file would have to be copied to every machine). Two
processes creating it at the same moment agree on the first one stored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table
from sqlmodel import Field, Session, SQLModel

from cloud.channels.vapid import VapidKeys, generate_vapid_keys, vapid_keys_from_pem
from cloud.db import UtcDateTime, dialect_insert


class WebPushKey(SQLModel, table=True):
    __tablename__ = "web_push_key"

    tenant: str = Field(primary_key=True, max_length=64)
    private_pem: str = Field(max_length=1000)
    application_server_key: str = Field(max_length=100)
    created_at: datetime = Field(sa_type=UtcDateTime)


KEY_TABLE: Table = SQLModel.metadata.tables[WebPushKey.__tablename__]


def tenant_vapid_keys(session: Session, *, tenant: str, now: datetime) -> VapidKeys:
    """The tenant's keys, generated and stored on first use (in the caller's transaction)."""
    found = session.get(WebPushKey, tenant)
    if found is None:
        keys = generate_vapid_keys()
        session.connection().execute(
            dialect_insert(session, KEY_TABLE)
            .values(
                tenant=tenant, private_pem=keys.private_pem.decode(),
                application_server_key=keys.application_server_key, created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["tenant"])
        )
        found = session.get(WebPushKey, tenant)
        assert found is not None
    return vapid_keys_from_pem(found.private_pem)
