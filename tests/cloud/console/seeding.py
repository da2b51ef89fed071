"""What the console's browser tests put in the database, through the code that does it
in production: presence stored as the ingest stage stores it, and a scenario run by the
scenario engine for real customers, with some of its messages sent, opened and
converted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import col, select

from cloud.customers.crud import create_customer, record_consent, register_device
from cloud.customers.models import ConsentCreate, CustomerCreate, DeviceKind, FcmRegistration
from cloud.db import session_scope
from cloud.ingest.batch import Inbound, write_batch
from cloud.messages.models import Message, MessageStatus
from cloud.presence.rollups import refresh_dirty
from cloud.scenarios.assignment import assign_variant, in_holdout
from cloud.scenarios.catalog import Catalog, save_scenario
from cloud.scenarios.engine import process_triggers
from cloud.scenarios.run import EngineConfig
from cloud.scenarios.sending import Links
from cloud.scenarios.spec import ScenarioSpec
from cloud.settings import ScenarioSettings
from cloud.templates.crud import save_template
from cloud.templates.spec import TemplateSpec
from cloud.triggers import TriggerKind, record_trigger
from shared.presence import PresenceEvent
from tests.cloud.console.conftest import Console
from tests.cloud.factories import batch_payload, presence_topic


def ingest(console: Console, events: Sequence[PresenceEvent]) -> None:
    """Store events as the ingest stage does, one message per gateway, and bring the
    footfall roll-ups up to date as the worker's refresh does."""
    by_gateway: dict[tuple[str, str], list[PresenceEvent]] = {}
    for event in events:
        by_gateway.setdefault((event.store, event.gateway), []).append(event)
    inbound = [Inbound(presence_topic(console.tenant, store, gateway), batch_payload(batch))
               for (store, gateway), batch in by_gateway.items()]
    write_batch(console.engine, inbound, received_at=console.clock(), tenants={console.tenant})
    with session_scope(console.engine) as session:
        while refresh_dirty(session, limit=500).hours:
            session.commit()
        session.commit()


PUSH = {"title": "Hola {{ customer.first_name }}", "body": "Tu carrito te espera"}
#: Customers entering the reported scenario at least; more join until the holdout has one
#: and each variant has five (assignment hashes the tenant, which each test makes anew).
CUSTOMERS = 24


def seed_template(console: Console, key: str = "cart") -> None:
    with session_scope(console.engine) as session:
        save_template(session, tenant=console.tenant, key=key, now=datetime.now(UTC),
                      spec=TemplateSpec.model_validate(
                          {"channel": "push", "locale": "es-ES", "parts": PUSH}))
        session.commit()


def reported_scenario() -> dict[str, Any]:
    return {
        "key": "cart", "name": "Cart reminder", "entry": {"event": "cart.abandoned"},
        "holdout_percent": 20, "variants": [{"key": "a"}, {"key": "b"}],
        "steps": [{"id": "remind", "type": "send", "channels": ["push"], "template": "cart"}],
    }


def run_journeys(console: Console) -> int:
    """Customers with the app abandon carts and the engine runs: journeys in the holdout
    and in each variant, a push queued for each treated one; some are then sent and
    opened, and some customers order. Returns how many customers entered."""
    now = datetime.now(UTC)
    with session_scope(console.engine) as session:
        spec = ScenarioSpec.model_validate(reported_scenario())
        save_scenario(session, tenant=console.tenant, now=now, spec=spec)
        groups: Counter[str | None] = Counter()
        number = 0
        while number < CUSTOMERS or groups["holdout"] < 1 or min(groups["a"], groups["b"]) < 5:
            number += 1
            customer = create_customer(session, tenant=console.tenant, now=now,
                                       data=CustomerCreate(first_name=f"C{number}"))
            record_consent(session, customer=customer, now=now, data=ConsentCreate(
                channel="push", granted=True, source="app", given_at=now))
            register_device(session, customer=customer, pseudonymizers=[], now=now,
                            registration=FcmRegistration(kind=DeviceKind.FCM,
                                                         token=f"fcm-token-{number:016d}"))
            assert customer.id is not None
            record_trigger(session, tenant=console.tenant, customer_id=customer.id,
                           kind=TriggerKind.CART_ABANDONED, occurred_at=now,
                           source_key=f"cart:{number}", now=now, attributes={})
            group = (None if in_holdout(spec, console.tenant, customer.id)
                     else assign_variant(spec, console.tenant, customer.id))
            groups[group or "holdout"] += 1
        session.commit()
        config = EngineConfig(settings=ScenarioSettings(quiet_hours=None),
                              links=Links(base_url=console.url, secret="s" * 32))
        process_triggers(session, catalog=Catalog(), config=config, now=now, limit=100)
        session.commit()
        queued = session.exec(select(Message).order_by(col(Message.id))).all()
        later = now + timedelta(minutes=5)
        for index, message in enumerate(queued[:10]):
            message.status, message.sent_at = MessageStatus.SENT, now
            message.opened_at = later if index < 5 else None
            message.converted_at = later if index < 2 else None
            session.add(message)
        session.commit()
        for order, customer_id in enumerate(sorted({m.customer_id for m in queued})[:4]):
            record_trigger(session, tenant=console.tenant, customer_id=customer_id,
                           kind=TriggerKind.ORDER_CREATED, occurred_at=later,
                           source_key=f"order:{order}", now=later, attributes={})
        session.commit()
    return number
