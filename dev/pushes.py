"""`vitrina-cloud dev push`: a test push to a customer's devices through the orchestrator's
own FCM sender and the session's provider settings. It checks the path from sender to
device, outside any scenario: no consent, cap or template applies, and nothing is
recorded."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, col, select

from cloud.channels.fcm import FcmSender, FcmSettings, PushMessage
from cloud.customers.models import Customer, Device, DeviceKind
from cloud.db import make_engine
from dev.session import DevSession


def device_tokens(session: DevSession, customer: str) -> list[str]:
    """The customer's active FCM registration tokens. No API hands them out (they are
    where the shop's pushes go), so they are read from the orchestrator's database."""
    engine = make_engine(session.database_url)
    try:
        with Session(engine) as db:
            tokens = db.exec(
                select(Device.token).join(Customer, col(Customer.id) == Device.customer_id)
                .where(Customer.tenant == session.tenant, Customer.public_id == customer,
                       Device.kind == DeviceKind.FCM, col(Device.active).is_(True))
                .order_by(col(Device.id))
            ).all()
    finally:
        engine.dispose()
    return [token for token in tokens if token]


def send_test_push(session: DevSession, *, tokens: list[str], title: str, body: str
                   ) -> list[tuple[str, str]]:
    """One push to each token; (token, what the provider answered) for each."""
    settings = FcmSettings.model_validate({
        "project_id": session.fcm_project, "credentials_file": session.fcm_credentials,
        "endpoint": session.fcm_url,
    })
    stamp = f"{datetime.now(UTC):%Y%m%d%H%M%S%f}"
    messages = [PushMessage(token=token, title=title, body=body,
                            idempotency_key=f"dev-test-{stamp}-{index}")
                for index, token in enumerate(tokens)]
    with FcmSender(settings) as sender:
        results = sender.send(messages)
    return [(result.token, f"sent ({result.provider_message_id})" if result.ok
             else f"refused: {result.error_code}") for result in results]
