"""`vitrina-cloud dev why`: what the engine decided for a customer and why, from the API
the console reads too: consent, devices, each journey with every step's outcome and
reason (held, suppressed, skipped), and every message with its status. Before those,
what happened to the customer (the engine's triggers: a visit, a geofence, an order)
and which scenarios each started: no API lists triggers, so they are read from the
orchestrator's database, as the demo reads its progress."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from cloud.customers.models import Customer
from cloud.db import make_engine
from cloud.triggers import Trigger
from dev.session import DevSession, admin_api, checked

#: The customer's latest triggers shown.
TRIGGERS_SHOWN = 12


def explain(session: DevSession, customer: str) -> str:
    with admin_api(session) as api:
        profile = checked(api.get(f"/customers/{customer}"))
        consent = checked(api.get(f"/customers/{customer}/consent"))["current"]
        devices = checked(api.get(f"/customers/{customer}/devices"))
        journeys = checked(api.get(f"/customers/{customer}/journeys"))
        messages = checked(api.get(f"/customers/{customer}/messages"))
    return "\n".join([
        _who(customer, profile), _consent(consent), _devices(devices),
        *_triggers(recent_triggers(session, customer), journeys),
        *_journeys(journeys), *_messages(messages),
    ])


def recent_triggers(session: DevSession, customer: str) -> list[Trigger]:
    """The customer's latest triggers, oldest first."""
    engine = make_engine(session.database_url)
    try:
        with Session(engine) as db:
            rows = db.exec(
                select(Trigger).join(Customer, col(Customer.id) == Trigger.customer_id)
                .where(Customer.tenant == session.tenant, Customer.public_id == customer)
                .order_by(col(Trigger.id).desc()).limit(TRIGGERS_SHOWN)
            ).all()
    finally:
        engine.dispose()
    return list(reversed(rows))


def _triggers(triggers: list[Trigger], journeys: list[dict[str, Any]]) -> list[str]:
    """Each trigger, whether the engine has handled it, and the scenarios whose entry it
    is (a trigger no scenario starts on is said to be one)."""
    started = {journey["entry_kind"] for journey in journeys}
    lines = [f"  triggers  {len(triggers) or 'none: nothing has happened to them yet'}"]
    for trigger in triggers:
        where = ", ".join(f"{key} {value}" for key, value in sorted(trigger.attributes.items())
                          if key in ("store", "geofence", "zone"))
        state = ("waiting for the engine" if trigger.processed_at is None
                 else "handled, a scenario starts on it" if trigger.kind in started
                 else "handled, no journey: no scenario starts on it now")
        lines.append(f"    {trigger.occurred_at:%Y-%m-%dT%H:%M:%S}  {trigger.kind}"
                     f"{f' ({where})' if where else ''}: {state}")
    return lines


def _who(customer: str, profile: dict[str, Any]) -> str:
    return f"customer {customer}" + "".join(
        f" {name}={profile[name]}" for name in ("external_id", "email", "first_name")
        if profile.get(name))


def _consent(current: dict[str, Any]) -> str:
    answers = ", ".join(f"{name}: {'yes' if entry['granted'] else 'no'}"
                        for name, entry in sorted(current.items()))
    return f"  consent   {answers or 'none recorded (silence is not consent)'}"


def _devices(devices: list[dict[str, Any]]) -> str:
    kinds = ", ".join(f"{d['kind']}{'' if d['active'] else ' (inactive)'}" for d in devices)
    return f"  devices   {kinds or 'none'}"


def _journeys(journeys: list[dict[str, Any]]) -> list[str]:
    lines = [f"  journeys  {len(journeys) or 'none: no scenario has started for them'}"]
    for journey in journeys:
        reason = f" ({journey['reason']})" if journey.get("reason") else ""
        lines.append(f"    {journey['scenario_key']} v{journey['scenario_version']} "
                     f"(entry {journey['entry_kind']}): {journey['status']}{reason}")
        for entry in journey.get("log", []):
            detail = f": {entry['detail']}" if entry.get("detail") else ""
            lines.append(f"      {entry['at'][:19]}  {entry['step']}  {entry['outcome']}{detail}")
    return lines


def _messages(messages: list[dict[str, Any]]) -> list[str]:
    lines = [f"  messages  {len(messages) or 'none'}"]
    for message in messages:
        why = f" ({message['error_code']})" if message.get("error_code") else ""
        origin = f"{message.get('scenario') or message['rule']}/{message.get('step') or '-'}"
        lines.append(f"    #{message['id']} {message['channel']} {origin}: "
                     f"{message['status']}{why}: “{message['title']}” {message['body']}")
    return lines
