"""Every table model, imported in one place so `SQLModel.metadata` is complete
(Alembic's autogenerate and the schema-drift test compare against it)."""

from sqlmodel import SQLModel

from cloud.audit import AuditEntry
from cloud.auth.models import (
    ApiKey,
    ConsoleSession,
    Invitation,
    LoginFailure,
    Member,
    Membership,
)
from cloud.channels.web_push import WebPushKey
from cloud.commerce.loyalty import LoyaltyEntry
from cloud.commerce.models import CommerceEvent, Order, OrderLine, OrderRefund
from cloud.customers.models import ConsentEntry, Customer, Device, ErasureRecord, IdentityLink
from cloud.delivery.receipts import KeptReceipt
from cloud.gateways.models import RegisteredGateway
from cloud.messages.models import Message, MessageAttempt
from cloud.offers.models import ComplementRule, Coupon, Offer
from cloud.places.models import (
    GeofenceDefinition,
    GeofencePresence,
    GeofenceVersion,
    RecentFix,
    StoreRow,
)
from cloud.preferences.models import TenantPreferences
from cloud.presence.models import (
    DeadLetter,
    FootfallDay,
    FootfallDirtyHour,
    FootfallHour,
    GatewayHealth,
    GatewayHealthSample,
    OccupancyMinute,
    PresenceEventRow,
)
from cloud.presence.stays import StoreStay
from cloud.rotation.models import TenantKeyState
from cloud.scenarios.models import CustomerTag, Journey, JourneyLog, Scenario
from cloud.segments.models import Segment, SegmentCount, SegmentVersion
from cloud.simulation.models import Simulation
from cloud.templates.crud import MessageTemplate
from cloud.triggers import Trigger
from cloud.webhooks.outbound import OutboundWebhook

metadata = SQLModel.metadata

__all__ = [
    "ApiKey",
    "AuditEntry",
    "CommerceEvent",
    "ComplementRule",
    "ConsentEntry",
    "ConsoleSession",
    "Coupon",
    "Customer",
    "CustomerTag",
    "DeadLetter",
    "Device",
    "ErasureRecord",
    "FootfallDay",
    "FootfallDirtyHour",
    "FootfallHour",
    "GatewayHealth",
    "GatewayHealthSample",
    "GeofenceDefinition",
    "GeofencePresence",
    "GeofenceVersion",
    "IdentityLink",
    "Invitation",
    "Journey",
    "JourneyLog",
    "KeptReceipt",
    "LoginFailure",
    "LoyaltyEntry",
    "Member",
    "Membership",
    "Message",
    "MessageAttempt",
    "MessageTemplate",
    "OccupancyMinute",
    "Offer",
    "Order",
    "OrderLine",
    "OrderRefund",
    "OutboundWebhook",
    "PresenceEventRow",
    "RecentFix",
    "RegisteredGateway",
    "Scenario",
    "Segment",
    "SegmentCount",
    "SegmentVersion",
    "Simulation",
    "StoreRow",
    "StoreStay",
    "TenantKeyState",
    "TenantPreferences",
    "Trigger",
    "WebPushKey",
    "metadata",
]
