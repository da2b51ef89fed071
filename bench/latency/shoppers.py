"""The shoppers: one consenting customer per event, and the database seeded with them
and the shop's in-store greeting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert, text
from sqlmodel import SQLModel

from bench.latency import TENANT
from cloud.customers.crud import link_pseudonyms
from cloud.customers.models import AppBeaconRegistration, DeviceKind
from cloud.db import session_scope
from cloud.scenarios.catalog import save_scenario
from cloud.scenarios.spec import ScenarioSpec
from cloud.templates.crud import save_template
from cloud.templates.spec import TemplateSpec
from demo.welcome import SCENARIO, TEMPLATE_KEY, TEMPLATE_PARTS
from shared.identifiers import IdentifierKind, canonical_identifier
from shared.pseudonym import Pseudonymizer


@dataclass(frozen=True, slots=True)
class Shopper:
    """One consenting customer; their app's beacon is what one event reports."""

    index: int
    install_id: str
    pseudonym: str
    token: str

    @property
    def external_id(self) -> str:
        return f"shopper-{self.index}"


def fcm_token(prefix: str, index: int) -> str:
    """A token shaped like FCM's ("<installation id>:<opaque>") that names its event."""
    return f"{prefix}{index:08d}:APA91b{'x' * 40}"


def index_of(token: str, prefix: str) -> int | None:
    if not token.startswith(prefix):
        return None
    return int(token[len(prefix) : token.index(":")])


def make_shoppers(count: int, pseudonymizer: Pseudonymizer) -> list[Shopper]:
    """The gateway's pseudonym of each app install, computed as the gateway computes it."""
    shoppers = []
    for index in range(count):
        install_id = f"install-{index:08d}"
        canonical = canonical_identifier(IdentifierKind.BLE_APP, install_id)
        shoppers.append(Shopper(index, install_id, pseudonymizer.stable(canonical),
                                fcm_token("shopper", index)))
    return shoppers


def seed(engine: Engine, shoppers: Sequence[Shopper], pseudonymizer: Pseudonymizer) -> None:
    """Customers with push and location-marketing consent, an FCM token and their app
    install linked (as the app's registration would leave them), plus the greeting.

    Written in bulk: the registration API would take minutes for this many customers and
    is not what is measured. The links are made by the registration's own function."""
    now = datetime.now(UTC)
    tables = SQLModel.metadata.tables
    customer, consent, device, link = (
        tables["customer"], tables["consent"], tables["device"], tables["identity_link"]
    )
    with engine.begin() as connection:
        rows = connection.execute(
            insert(customer).returning(customer.c.id, sort_by_parameter_order=True),
            [{"tenant": TENANT, "external_id": s.external_id, "first_name": f"Shopper{s.index}",
              "attributes": {}, "created_at": now, "updated_at": now} for s in shoppers],
        ).all()
        ids = [int(row[0]) for row in rows]
        connection.execute(insert(consent), [
            {"customer_id": cid, "channel": channel, "granted": True, "source": "app",
             "given_at": now - timedelta(days=1), "recorded_at": now - timedelta(days=1)}
            for cid in ids for channel in ("push", "location_marketing")
        ])
        connection.execute(insert(device), [
            {"tenant": TENANT, "customer_id": cid, "kind": DeviceKind.FCM.value,
             "token": s.token, "active": True, "registered_at": now}
            for cid, s in zip(ids, shoppers, strict=True)
        ])
        beacons = connection.execute(
            insert(device).returning(device.c.id, sort_by_parameter_order=True),
            [{"tenant": TENANT, "customer_id": cid, "kind": DeviceKind.APP_BEACON.value,
              "active": True, "registered_at": now} for cid in ids],
        ).all()
        links = []
        for cid, s, beacon in zip(ids, shoppers, beacons, strict=True):
            registration = AppBeaconRegistration(kind=DeviceKind.APP_BEACON,
                                                 install_id=s.install_id)
            for key_id, pseudonym in link_pseudonyms(registration, [pseudonymizer]):
                if pseudonym != s.pseudonym:
                    raise RuntimeError("the cloud's link differs from the gateway's pseudonym")
                links.append({"tenant": TENANT, "pseudonym": pseudonym, "key_id": key_id,
                              "device_id": int(beacon[0]), "customer_id": cid,
                              "created_at": now})
        connection.execute(insert(link), links)
    with session_scope(engine) as session:
        spec = TemplateSpec.model_validate(
            {"channel": "push", "locale": "en-GB", "parts": TEMPLATE_PARTS}
        )
        save_template(session, tenant=TENANT, key=TEMPLATE_KEY, spec=spec, now=now)
        save_scenario(session, tenant=TENANT, spec=ScenarioSpec.model_validate(SCENARIO),
                      now=now)
        session.commit()
    # A production database has planner statistics; a freshly filled one has none yet.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))
