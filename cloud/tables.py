"""Every table model, imported in one place so `SQLModel.metadata` is complete
(Alembic's autogenerate and the schema-drift test compare against it)."""

from sqlmodel import SQLModel

from cloud.customers.models import ConsentEntry, Customer, Device, IdentityLink
from cloud.messages.models import Message
from cloud.presence.models import DeadLetter, GatewayHealth, PresenceEventRow

metadata = SQLModel.metadata

__all__ = [
    "ConsentEntry",
    "Customer",
    "DeadLetter",
    "Device",
    "GatewayHealth",
    "IdentityLink",
    "Message",
    "PresenceEventRow",
    "metadata",
]
