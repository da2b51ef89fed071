"""Anonymous installations of the shop's app, and how a signed-in customer claims one.

Before its user signs in, the app holds only the shop's app key, which proves nothing
about anyone: it may create an anonymous installation (a customer row marked anonymous,
reached by its unguessable public id alone), register the phone's push token and beacon
id on it and record its consent answers. When the user signs in, the app sends the
customer token the shop's backend signed together with the installation's id: the
installation's devices, identity links and consent answers move to the customer, and
the installation, with whatever else it gathered (triggers, journeys), is deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, SQLModel, col

from cloud.customers.models import ConsentEntry, Customer, Device, IdentityLink
from cloud.erasure import delete_customer

#: What moves from an installation to the customer who claims it; the rest is deleted.
_MOVED: tuple[tuple[str, type[SQLModel]], ...] = (
    ("devices", Device),
    ("identity_links", IdentityLink),
    ("consents", ConsentEntry),
)


class ClaimError(ValueError):
    """An installation that cannot be claimed; the message says why."""


def claim_installation(
    session: Session, *, customer: Customer, installation: Customer, now: datetime
) -> dict[str, int]:
    """Move `installation`'s devices and consent answers to `customer` and delete it;
    how many rows of each kind moved. Consent answers keep when they were given, so the
    customer's current answer per channel stays the latest one."""
    assert customer.id is not None
    assert installation.id is not None
    if not installation.anonymous or installation.tenant != customer.tenant:
        raise ClaimError("this is not an anonymous installation of the tenant")
    moved: dict[str, int] = {}
    for name, model in _MOVED:
        column: Any = model.customer_id  # type: ignore[attr-defined]
        result = session.execute(
            update(model).where(col(column) == installation.id).values(customer_id=customer.id)
        )
        moved[name] = int(result.rowcount)  # type: ignore[attr-defined]
    session.flush()
    session.expire_all()
    delete_customer(session, customer=installation, now=now)
    return moved
