from datetime import timedelta

import pytest
from sqlalchemy import Engine

from cloud.customers import crud
from cloud.customers.models import (
    AppBeaconRegistration,
    ConsentCreate,
    CustomerCreate,
    FcmRegistration,
    WifiMacRegistration,
)
from cloud.db import session_scope
from shared.identifiers import app_identifier, wifi_identifier
from shared.pseudonym import Pseudonymizer, TenantKey
from tests.cloud.factories import MAC_OF, PSEUDONYMIZER, START

OLD_KEY = Pseudonymizer(TenantKey.from_text("k0", "99" * 32))


def test_links_are_made_under_every_tenant_key_as_a_gateway_would(
    engine: Engine, tenant: str
) -> None:
    with session_scope(engine) as session:
        customer = crud.create_customer(session, tenant=tenant, data=CustomerCreate(), now=START)
        crud.register_device(
            session,
            customer=customer,
            pseudonymizers=[PSEUDONYMIZER, OLD_KEY],
            now=START,
            registration=WifiMacRegistration(kind="wifi_mac", mac=MAC_OF["ana"].replace(":", "-")),
        )
        crud.register_device(
            session,
            customer=customer,
            pseudonymizers=[PSEUDONYMIZER],
            now=START,
            registration=AppBeaconRegistration(kind="app_beacon", install_id="inst-42x"),
        )
        session.commit()
        owners = crud.customers_for_pseudonyms(
            session,
            tenant=tenant,
            pseudonyms=[
                PSEUDONYMIZER.stable(wifi_identifier(MAC_OF["ana"])),
                OLD_KEY.stable(wifi_identifier(MAC_OF["ana"])),
                PSEUDONYMIZER.stable(app_identifier("inst-42x")),
                PSEUDONYMIZER.stable(wifi_identifier(MAC_OF["juan"])),
            ],
        )
        assert crud.customers_for_pseudonyms(session, tenant="other", pseudonyms=list(owners)) == {}
    assert sorted(owners.values()) == [customer.id] * 3


@pytest.mark.parametrize(
    ("registration", "message"),
    [
        (WifiMacRegistration(kind="wifi_mac", mac="06:11:22:33:44:55"), "randomized"),
        (WifiMacRegistration(kind="wifi_mac", mac="00:11:22"), "48-bit MAC"),
        (AppBeaconRegistration(kind="app_beacon", install_id="no spaces!"), "install id"),
    ],
)
def test_unlinkable_identifiers_are_refused(
    engine: Engine,
    tenant: str,
    registration: WifiMacRegistration | AppBeaconRegistration,
    message: str,
) -> None:
    with session_scope(engine) as session:
        customer = crud.create_customer(session, tenant=tenant, data=CustomerCreate(), now=START)
        with pytest.raises(crud.RegistrationError, match=message):
            crud.register_device(
                session,
                customer=customer,
                registration=registration,
                pseudonymizers=[PSEUDONYMIZER],
                now=START,
            )


def test_consent_ledger_latest_given_answer_wins(engine: Engine, tenant: str) -> None:
    with session_scope(engine) as session:
        customer = crud.create_customer(session, tenant=tenant, data=CustomerCreate(), now=START)
        assert customer.id is not None

        def record(channel: str, granted: bool, minutes: int) -> None:
            crud.record_consent(
                session,
                customer=customer,
                now=START,
                data=ConsentCreate(
                    channel=channel,
                    granted=granted,
                    source="app",
                    given_at=START + timedelta(minutes=minutes),
                ),
            )

        record("push", True, 10)
        record("push", False, 5)  # recorded later, but given earlier
        record("location_marketing", True, 1)
        both = ("push", "location_marketing")
        assert crud.has_consent(session, customer_id=customer.id, channels=both)
        record("location_marketing", False, 20)
        assert not crud.has_consent(session, customer_id=customer.id, channels=both)
        assert crud.has_consent(session, customer_id=customer.id, channels=["push"])
        assert not crud.has_consent(session, customer_id=customer.id, channels=["sms"])
        assert len(crud.consent_ledger(session, customer_id=customer.id)) == 4


def test_dead_tokens_are_deactivated_and_reactivated_on_re_registration(
    engine: Engine, tenant: str
) -> None:
    token = FcmRegistration(kind="fcm", token="fcm-token-cccccccccccccccc")
    with session_scope(engine) as session:
        customer = crud.create_customer(session, tenant=tenant, data=CustomerCreate(), now=START)
        assert customer.id is not None
        device = crud.register_device(
            session, customer=customer, registration=token, pseudonymizers=[], now=START
        )
        assert device.id is not None
        crud.deactivate_device(session, device_id=device.id, reason="UNREGISTERED", now=START)
        assert crud.active_push_devices(session, customer_id=customer.id) == []
        again = crud.register_device(
            session, customer=customer, registration=token, pseudonymizers=[], now=START
        )
        assert again.id == device.id
        assert [d.id for d in crud.active_push_devices(session, customer_id=customer.id)] == [
            device.id
        ]
