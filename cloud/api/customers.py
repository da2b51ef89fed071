"""A tenant's customers: sign-up, profile, consent, devices, and erasure.

The shop's app (an app key) signs customers up, records their answers to consent
questions and registers their devices; the shop's admin reads and erases them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Query, status
from pydantic import BaseModel

from cloud.api.access import (
    MayCreateCustomers,
    MayEraseCustomers,
    MayReadCustomers,
    MayRecordConsent,
    MayRegisterDevices,
)
from cloud.api.audit import Audit
from cloud.api.deps import MAX_PAGE, NowDep, OutboundPolicyDep, SessionDep, TenantConfig
from cloud.channels import LOCATION_MARKETING
from cloud.customers import crud as customers
from cloud.customers.models import (
    ConsentCreate,
    ConsentPublic,
    Customer,
    CustomerCreate,
    CustomerPublic,
    DeviceKind,
    DevicePublic,
    DeviceRegistration,
    ErasurePublic,
    WebPushRegistration,
)
from cloud.customers.triggers import record_signup, record_subscription
from cloud.erasure import erase_customer
from cloud.outbound import OutboundPolicy, OutboundRefusedError, count_refusal
from cloud.places.crud import forget_stays
from cloud.places.recent import forget_recent_fixes, location_granted

router = APIRouter(tags=["customers"])


def path_customer(session: SessionDep, tenant: str, customer_id: int) -> Customer:
    """The customer in the path; 404 when the tenant has none by that id."""
    customer = customers.get_customer(session, tenant=tenant, customer_id=customer_id)
    if customer is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"customer {customer_id} of tenant {tenant!r} not found"
        )
    return customer


CustomerDep = Annotated[Customer, Depends(path_customer)]


class ConsentState(BaseModel):
    current: dict[str, ConsentPublic]
    ledger: list[ConsentPublic]


@router.post("/customers", status_code=status.HTTP_201_CREATED, response_model=CustomerPublic)
def create_customer(
    caller: MayCreateCustomers, session: SessionDep, now: NowDep, tenant: str, data: CustomerCreate
) -> Customer:
    try:
        customer = customers.create_customer(session, tenant=tenant, data=data, now=now)
    except customers.DuplicateCustomerError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    assert customer.id is not None
    record_signup(session, tenant=tenant, customer_id=customer.id, now=now)
    session.commit()
    return customer


@router.get("/customers", response_model=list[CustomerPublic])
def list_customers(
    caller: MayReadCustomers, session: SessionDep, tenant: str,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Sequence[Customer]:
    return customers.list_customers(session, tenant=tenant, limit=limit, offset=offset)


@router.get("/customers/{customer_id}", response_model=CustomerPublic)
def get_customer(caller: MayReadCustomers, customer: CustomerDep) -> Customer:
    return customer


@router.post(
    "/customers/{customer_id}/consent",
    status_code=status.HTTP_201_CREATED, response_model=ConsentPublic,
)
def record_consent(
    caller: MayRecordConsent, session: SessionDep, now: NowDep, customer: CustomerDep,
    data: ConsentCreate,
) -> ConsentPublic:
    """Append an answer to the customer's consent ledger. An answer that leaves the
    customer without a grant of location-based marketing forgets at once what was kept of
    their location: the fixes for the map and the geofences they were in (a stay left
    behind would otherwise still end in an exit trigger)."""
    entry = customers.record_consent(session, customer=customer, data=data, now=now)
    if data.channel == LOCATION_MARKETING and customer.id is not None and not (
        location_granted(session, customer_id=customer.id)
    ):
        forget_recent_fixes(session, customer_id=customer.id)
        forget_stays(session, customer_id=customer.id)
    session.commit()
    return ConsentPublic.model_validate(entry)


@router.get("/customers/{customer_id}/consent", response_model=ConsentState)
def get_consent(
    caller: MayRecordConsent, session: SessionDep, customer: CustomerDep
) -> ConsentState:
    assert customer.id is not None
    ledger = customers.consent_ledger(session, customer_id=customer.id)
    current = customers.current_consent(session, customer_id=customer.id)
    return ConsentState(
        current={channel: ConsentPublic.model_validate(e) for channel, e in current.items()},
        ledger=[ConsentPublic.model_validate(entry) for entry in ledger],
    )


@router.post(
    "/customers/{customer_id}/devices",
    status_code=status.HTTP_201_CREATED, response_model=DevicePublic,
)
def register_device(
    caller: MayRegisterDevices, session: SessionDep, now: NowDep, tenant_settings: TenantConfig,
    customer: CustomerDep,
    registration: Annotated[DeviceRegistration, Body()], policy: OutboundPolicyDep,
) -> DevicePublic:
    """Register one of the customer's devices. A Web Push endpoint is where the delivery
    worker will post, so the outbound rules apply to it (`cloud.outbound`): one they
    refuse is a 422 at `["body", "endpoint"]` whose `msg` starts with the rule."""
    assert customer.id is not None
    if isinstance(registration, WebPushRegistration):
        check_endpoint(policy, tenant=customer.tenant, endpoint=str(registration.endpoint))
    try:
        device = customers.register_device(
            session, customer=customer, registration=registration,
            pseudonymizers=tenant_settings.pseudonymizers(), now=now,
        )
    except customers.RegistrationError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    assert device.id is not None
    record_subscription(
        session, tenant=customer.tenant, customer_id=customer.id, device_id=device.id,
        kind=DeviceKind(device.kind), now=now,
    )
    session.commit()
    return customers.public_device(device, customers.link_key_ids(session, device_id=device.id))


def check_endpoint(policy: OutboundPolicy, *, tenant: str, endpoint: str) -> None:
    """Raise a 422 located at the endpoint when the outbound rules refuse it."""
    try:
        policy.check_url(endpoint)
    except OutboundRefusedError as refusal:
        count_refusal(refusal, client="web_push", stage="save", tenant=tenant)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", "endpoint"], "type": "value_error",
            "msg": f"refused ({refusal.rule}): {refusal.reason}",
        }]) from None


@router.get("/customers/{customer_id}/devices", response_model=list[DevicePublic])
def list_devices(
    caller: MayRegisterDevices, session: SessionDep, customer: CustomerDep
) -> list[DevicePublic]:
    assert customer.id is not None
    return customers.list_devices(session, customer_id=customer.id)


@router.delete("/customers/{customer_id}", response_model=ErasurePublic)
def erase(
    caller: MayEraseCustomers, session: SessionDep, now: NowDep, audit: Audit,
    customer: CustomerDep,
) -> ErasurePublic:
    """Erase a customer: profile, consents, devices, links, messages, commerce history."""
    target = f"customer:{customer.id}"
    record = erase_customer(session, customer=customer, now=now)
    erased = ErasurePublic.model_validate(record)
    audit.record("customer.erase", target, after=erased)  # counts only: nothing of who
    session.commit()
    return erased

