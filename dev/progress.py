"""How far the orchestrator got with what the gateway published, read from its database.

The demo checks that Ana gets no push and Juan no second one; that only means something
once nothing is left that could still send one. Each stage leaves its mark in the
orchestrator's tables, in the transaction of its work: ingest stores a presence event
together with its trigger, the scenario engine marks a trigger handled together with the
messages it queued, and delivery records a message sent after the push service accepted
it. So, read in that order, the pipeline has settled once the gateway's last status
(offline, nothing left in its outbox) is stored, every event it says it published is
stored, no trigger waits for the scenario engine, and no message waits to be sent.
No API shows the queues, so the demo reads the database it gave the orchestrator, and
`vitrina-cloud dev visit` reads the developer environment's the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from cloud.messages.models import WAITING_STATUSES, Message
from cloud.presence.models import GatewayHealth, PresenceEventRow
from cloud.triggers import Trigger


@dataclass(frozen=True, slots=True)
class Progress:
    #: The gateway's last stored status: offline, with nothing left in its outbox.
    gateway_done: bool
    #: Events the gateway says it published, and those of them the orchestrator stored.
    published: int
    stored: int
    #: Triggers the scenario engine has not handled yet.
    unhandled_triggers: int
    #: Messages queued and not yet sent (nor failed, suppressed or expired).
    waiting_messages: int

    @property
    def settled(self) -> bool:
        return (
            self.gateway_done and self.stored >= self.published
            and self.unhandled_triggers == 0 and self.waiting_messages == 0
        )


def read_progress(engine: Engine, *, tenant: str, store: str, gateway: str) -> Progress:
    """Each count in its own statement, upstream first: a stage's work is committed
    together with what it hands the next one, so a later count covers everything an
    earlier one saw."""
    with Session(engine) as session:
        health = session.get(GatewayHealth, (tenant, store, gateway))
        stored = session.exec(
            select(func.count()).select_from(PresenceEventRow).where(
                PresenceEventRow.tenant == tenant, PresenceEventRow.store == store,
                PresenceEventRow.gateway == gateway,
            )
        ).one()
        unhandled = session.exec(
            select(func.count()).select_from(Trigger).where(
                Trigger.tenant == tenant, col(Trigger.processed_at).is_(None)
            )
        ).one()
        waiting = session.exec(
            select(func.count()).select_from(Message).where(
                Message.tenant == tenant,
                col(Message.status).in_([status.value for status in WAITING_STATUSES]),
            )
        ).one()
    return Progress(
        gateway_done=health is not None and not health.online and health.queue_depth == 0,
        published=health.published if health is not None else 0,
        stored=stored, unhandled_triggers=unhandled, waiting_messages=waiting,
    )
