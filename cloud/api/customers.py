"""A tenant's customers: sign-up, profile, consent, devices, and erasure.

The shop's app signs customers up, records their answers to consent questions and
registers their devices; the shop's admin reads and erases them. An app key is public,
so it acts for a customer only with the customer token the shop's backend signed for
them (`X-Customer-Token`, see `cloud.auth.customer_tokens`): every route about one
customer checks that the token's subject is the customer in the path. Without a token
an app key may create an anonymous installation and act on it by its unguessable id, and
nothing else.

Customers are named by their public id (`cus_` and 32 hex digits) in paths and answers;
the back office may also use the database's number, which apps never see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict
from sqlmodel import Session

from cloud.api.access import (
    CustomerTokenClaims,
    MayCreateCustomers,
    MayEraseCustomers,
    MayReadCustomers,
    MayReadProfile,
    MayRecordConsent,
    MayRegisterDevices,
    TenantCaller,
    needs_customer_token,
    other_customer,
)
from cloud.api.audit import Audit
from cloud.api.deps import MAX_PAGE, NowDep, OutboundPolicyDep, SessionDep, TenantConfig
from cloud.api.errors import refusals
from cloud.auth.customer_tokens import CustomerClaims
from cloud.bounds import INT4_MAX, Offset
from cloud.channels import LOCATION_MARKETING
from cloud.customers import crud as customers
from cloud.customers.device_consent import DeviceRegistered, consent_warnings
from cloud.customers.models import (
    ANONYMOUS_FIELDS,
    PUBLIC_ID_PATTERN,
    ConsentCreate,
    ConsentPublic,
    Customer,
    CustomerCreate,
    CustomerPublic,
    DeviceKind,
    DevicePublic,
    DeviceRegistration,
    ErasurePublic,
    SignUp,
    WebPushRegistration,
)
from cloud.customers.triggers import record_signup, record_subscription
from cloud.erasure import erase_customer
from cloud.examples import CUSTOMER_ID, example
from cloud.installations import claim_installation
from cloud.outbound import OutboundPolicy, OutboundRefusedError, count_refusal
from cloud.places.crud import forget_stays
from cloud.places.recent import forget_recent_fixes, location_granted
from cloud.presence.stays import forget_store_stays
from cloud.rotation.flow import sync_ring
from cloud.settings import TenantSettings
from shared.pseudonym import Pseudonymizer

router = APIRouter(tags=["customers"])


@dataclass(frozen=True, slots=True)
class CustomerAccess:
    """The customer in the path, and whether the caller proved to be them (their token)
    or is the back office, rather than holding only an anonymous installation's id."""

    customer: Customer
    proven: bool


def _not_found(tenant: str, customer_id: str, *, app: bool) -> HTTPException:
    hint = " (apps name customers by the public id the API gave them, cus_...)" if (
        app and customer_id.isdigit()) else ""
    return HTTPException(status.HTTP_404_NOT_FOUND,
                         f"customer {customer_id!r} of tenant {tenant!r} not found{hint}")


def find_path_customer(
    session: SessionDep, *, tenant: str, customer_id: str, by_number: bool
) -> Customer | None:
    """By public id; by the database's number too when `by_number` (the back office).
    Anything else (a number past the column's range, text that is no public id) names
    nobody: it is not looked up."""
    if by_number and customer_id.isdigit() and len(customer_id) <= len(str(INT4_MAX)):
        number = int(customer_id)
        if number > INT4_MAX:
            return None
        return customers.get_customer(session, tenant=tenant, customer_id=number)
    if not PUBLIC_ID_PATTERN.fullmatch(customer_id):
        return None
    return customers.find_by_public_id(session, tenant=tenant, public_id=customer_id)


def customer_access(
    caller: TenantCaller, claims: CustomerTokenClaims, session: SessionDep, tenant: str,
    customer_id: str,
) -> CustomerAccess:
    """The customer in the path, if this caller may act for them: the back office always;
    an app key with the customer's token, or on an anonymous installation by its id.
    404 when the tenant has no such customer, 401 for an app key without the token the
    customer needs, 403 for a token of another customer."""
    customer = find_path_customer(session, tenant=tenant, customer_id=customer_id,
                                  by_number=not caller.is_app)
    if customer is None:
        raise _not_found(tenant, customer_id, app=caller.is_app)
    if not caller.is_app:
        return CustomerAccess(customer=customer, proven=True)
    if claims is not None:
        if customer.external_id is None or claims.subject != customer.external_id:
            raise other_customer(caller, "the customer token is for another customer")
        return CustomerAccess(customer=customer, proven=True)
    if customer.anonymous:
        return CustomerAccess(customer=customer, proven=False)
    raise needs_customer_token("an app key acts for a signed-in customer only with their token")


CustomerAccessDep = Annotated[CustomerAccess, Depends(customer_access)]


def path_customer(access: CustomerAccessDep) -> Customer:
    return access.customer


CustomerDep = Annotated[Customer, Depends(path_customer)]


class ConsentState(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"current": {"push": {"id": 12, "customer_id": CUSTOMER_ID, "channel": "push",
                              "granted": True, "source": "app",
                              "given_at": "2026-12-07T09:30:00Z",
                              "recorded_at": "2026-12-07T09:30:01Z"}},
         "ledger": [{"id": 12, "customer_id": CUSTOMER_ID, "channel": "push", "granted": True,
                     "source": "app", "given_at": "2026-12-07T09:30:00Z",
                     "recorded_at": "2026-12-07T09:30:01Z"}]},
    ))

    current: dict[str, ConsentPublic]
    ledger: list[ConsentPublic]


@router.get("/customers", response_model=list[CustomerPublic])
def list_customers(
    caller: MayReadCustomers, session: SessionDep, tenant: str,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[Offset, Query()] = 0,
) -> list[CustomerPublic]:
    return [customers.public_customer(customer) for customer in
            customers.list_customers(session, tenant=tenant, limit=limit, offset=offset)]


@router.get("/customers/{customer_id}", response_model=CustomerPublic)
def get_customer(caller: MayReadProfile, customer: CustomerDep) -> CustomerPublic:
    """A customer's profile: for the back office, and for the app signed in as them."""
    return customers.public_customer(customer)


@router.post("/customers", status_code=status.HTTP_201_CREATED, response_model=CustomerPublic,
             responses={200: {"description": "the token's customer already existed",
                              "model": CustomerPublic}, **refusals(409)})
def create_customer(
    caller: MayCreateCustomers, claims: CustomerTokenClaims, session: SessionDep, now: NowDep,
    tenant: str, data: SignUp, response: Response,
) -> CustomerPublic:
    """Sign a customer up, or find the one the customer token names (200).

    An app key without a token makes an anonymous installation (only `locale` and
    `time_zone`). With the token the shop's backend signed, it signs in: the customer
    whose external id is the token's subject, made if new (201), as it is if not (200;
    the profile is the shop's backend's to change), and `installation_id` names the
    anonymous installation to merge into them. The back office creates customers as
    before, and is told (409) when an external id is taken; an app key never is."""
    if caller.is_app:
        customer, created = _app_sign_up(session, claims, now=now, tenant=tenant, data=data)
    else:
        customer, created = _create(session, now=now, tenant=tenant, data=data,
                                    anonymous=False), True
    if data.installation_id is not None:
        _claim(session, tenant=tenant, customer=customer, installation_id=data.installation_id,
               now=now)
    session.commit()
    session.refresh(customer)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return customers.public_customer(customer)


def _profile(data: SignUp) -> CustomerCreate:
    return CustomerCreate.model_validate(data.model_dump(exclude={"installation_id"}))


def _create(
    session: SessionDep, *, now: NowDep, tenant: str, data: SignUp, anonymous: bool
) -> Customer:
    try:
        customer = customers.create_customer(session, tenant=tenant, data=_profile(data),
                                             now=now, anonymous=anonymous)
    except customers.DuplicateCustomerError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    assert customer.id is not None
    if not anonymous:
        record_signup(session, tenant=tenant, customer_id=customer.id, now=now)
    return customer


def _app_sign_up(
    session: SessionDep, claims: CustomerClaims | None, *, now: NowDep, tenant: str,
    data: SignUp,
) -> tuple[Customer, bool]:
    """What an app key may make: an anonymous installation without a token, or the
    token's own customer. Nothing here tells an app whether some other external id is
    taken: the only external id it can name is the one the shop signed for it."""
    named = sorted(data.model_fields_set - ANONYMOUS_FIELDS - {"installation_id"})
    if claims is None:
        if named or data.installation_id is not None:
            raise needs_customer_token(
                "without a customer token an app key creates only an anonymous "
                f"installation (locale, time_zone; not {', '.join(named or ['installation_id'])})"
            )
        return _create(session, now=now, tenant=tenant, data=data, anonymous=True), True
    if data.external_id is not None and data.external_id != claims.subject:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", "external_id"], "type": "value_error",
            "msg": "must be the customer token's subject (or left out)",
        }])
    existing = customers.find_by_external_id(session, tenant=tenant, external_id=claims.subject)
    if existing is not None:
        return existing, False
    data = data.model_copy(update={"external_id": claims.subject})
    try:
        return _create(session, now=now, tenant=tenant, data=data, anonymous=False), True
    except HTTPException:  # signed up by a concurrent request with the same token
        found = customers.find_by_external_id(session, tenant=tenant,
                                              external_id=claims.subject)
        if found is None:
            raise
        return found, False


def _claim(session: SessionDep, *, tenant: str, customer: Customer, installation_id: str,
           now: datetime) -> None:
    """Merge the app's anonymous installation into the customer who signed in on it."""
    installation = customers.find_by_public_id(session, tenant=tenant,
                                               public_id=installation_id)
    if installation is None or not installation.anonymous or installation.id == customer.id:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", "installation_id"], "type": "value_error",
            "msg": "no anonymous installation of this tenant has this id (claimed already?)",
        }])
    claim_installation(session, customer=customer, installation=installation, now=now)


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
    their location: the fixes for the map, the geofences they were in (a stay left
    behind would otherwise still end in an exit trigger) and their store stays."""
    entry = customers.record_consent(session, customer=customer, data=data, now=now)
    if data.channel == LOCATION_MARKETING and customer.id is not None and not (
        location_granted(session, customer_id=customer.id)
    ):
        forget_recent_fixes(session, customer_id=customer.id)
        forget_stays(session, customer_id=customer.id)
        forget_store_stays(session, customer_id=customer.id)
    session.commit()
    return customers.public_consent(entry, customer=customer)


@router.get("/customers/{customer_id}/consent", response_model=ConsentState)
def get_consent(
    caller: MayRecordConsent, session: SessionDep, customer: CustomerDep
) -> ConsentState:
    assert customer.id is not None
    ledger = customers.consent_ledger(session, customer_id=customer.id)
    current = customers.current_consent(session, customer_id=customer.id)
    return ConsentState(
        current={channel: customers.public_consent(entry, customer=customer)
                 for channel, entry in current.items()},
        ledger=[customers.public_consent(entry, customer=customer) for entry in ledger],
    )


def _linking(session: Session, tenant: str, settings: TenantSettings, now: datetime
             ) -> list[Pseudonymizer]:
    """Every key in use (listed or active, not retired): a device links under each, and a
    re-registration adds the links of keys listed since (`cloud.rotation`)."""
    return sync_ring(session, tenant=tenant, settings=settings, now=now).linking()


@router.post(
    "/customers/{customer_id}/devices",
    status_code=status.HTTP_201_CREATED, response_model=DeviceRegistered,
)
def register_device(
    caller: MayRegisterDevices, session: SessionDep, now: NowDep, tenant_settings: TenantConfig,
    access: CustomerAccessDep,
    registration: Annotated[DeviceRegistration, Body()], policy: OutboundPolicyDep,
) -> DeviceRegistered:
    """Register a push token, a web push subscription or a presence identifier. One that
    is registered to another customer moves here only for the back office or an app with
    this customer's token (403 otherwise): an app key alone takes nobody's phone. A Web
    Push endpoint is where the delivery worker will post, so the outbound rules apply to it
    (`cloud.outbound`): one they refuse is a 422 at `["body", "endpoint"]` whose `msg`
    starts with the rule. The device is registered whatever the customer's consent; the
    answer's `warnings` name each consent it needs and lacks (a push token without a yes
    on its channel sends nothing, a presence identifier without location_marketing starts
    no visit scenario)."""
    customer = access.customer
    assert customer.id is not None
    if isinstance(registration, WebPushRegistration):
        check_endpoint(policy, tenant=customer.tenant, endpoint=str(registration.endpoint))
    try:
        device = customers.register_device(
            session, customer=customer, registration=registration,
            pseudonymizers=_linking(session, customer.tenant, tenant_settings, now), now=now,
            may_move=access.proven,
        )
    except customers.OwnedElsewhereError as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(error)) from None
    except customers.RegistrationError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    assert device.id is not None
    record_subscription(
        session, tenant=customer.tenant, customer_id=customer.id, device_id=device.id,
        kind=DeviceKind(device.kind), now=now,
    )
    warnings = consent_warnings(session, customer_id=customer.id, kind=DeviceKind(device.kind))
    session.commit()
    public = customers.public_device(
        device, customers.link_key_ids(session, device_id=device.id), customer=customer
    )
    return DeviceRegistered(**public.model_dump(), warnings=warnings)


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
    return customers.list_devices(session, customer=customer)


@router.delete("/customers/{customer_id}", response_model=ErasurePublic)
def erase(
    caller: MayEraseCustomers, session: SessionDep, now: NowDep, audit: Audit,
    customer: CustomerDep,
) -> ErasurePublic:
    """Erase a customer: profile, consents, devices, links, messages, commerce history."""
    target = f"customer:{customer.public_id}"
    record = erase_customer(session, customer=customer, now=now)
    erased = ErasurePublic.model_validate(record)
    audit.record("customer.erase", target, after=erased)  # counts only: nothing of who
    session.commit()
    return erased

