"""What a registered device is good for without the customer's consent: a device is
registered whatever the answers (the app registers it at install, and asks later), but a
push token without a yes on its channel, or a presence identifier without a yes on
location-based marketing, sends nothing. The registration's answer says so, naming the
consent, rather than leaving a developer to wonder why no push ever came."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlmodel import Session

from cloud.channels import LOCATION_MARKETING, DeviceAddress, adapters
from cloud.customers.crud import current_consent
from cloud.customers.models import LINKABLE_KINDS, DeviceKind, DevicePublic

#: The one warning code a registration gives today.
MISSING_CONSENT = "missing_consent"


class RegistrationWarning(BaseModel):
    """Something the registration did not refuse but that keeps it from working yet."""

    code: str = Field(description="missing_consent")
    consent: str = Field(description="the consent kind the customer has not granted")
    answer: str = Field(description="`none` (never answered) or `no`")
    message: str = Field(description="what is not sent, and how to change it")


class DeviceRegistered(DevicePublic):
    """A registered device, and what keeps it from working yet."""

    warnings: list[RegistrationWarning] = Field(
        default_factory=list,
        description="empty when the customer has granted what the device needs; else a "
        "missing_consent per consent it lacks (the device is registered all the same)")


def needed_consents(kind: DeviceKind) -> list[str]:
    """The consent kinds this device's use needs: its channel's for a delivery address,
    location-based marketing for a presence identifier."""
    if kind in LINKABLE_KINDS:
        return [LOCATION_MARKETING]
    return [adapter.consent for adapter in adapters()
            if isinstance(adapter.address, DeviceAddress) and adapter.address.kind == kind]


def consent_warnings(
    session: Session, *, customer_id: int, kind: DeviceKind
) -> list[RegistrationWarning]:
    """A warning per consent the device needs and the customer has not granted."""
    current = current_consent(session, customer_id=customer_id)
    warnings = []
    for consent in needed_consents(kind):
        entry = current.get(consent)
        if entry is not None and entry.granted:
            continue
        answer = "none" if entry is None else "no"
        warnings.append(RegistrationWarning(
            code=MISSING_CONSENT, consent=consent, answer=answer,
            message=_message(kind, consent, answered=entry is not None)))
    return warnings


def _message(kind: DeviceKind, consent: str, *, answered: bool) -> str:
    said = "said no to" if answered else "has not granted"
    if consent == LOCATION_MARKETING:
        effect = ("store visits seen through this device start no marketing (no visit "
                  "scenario, no push about the store)")
    else:
        effect = f"no marketing message is sent to this {kind.value} device"
    return (f"registered, but the customer {said} {consent}: {effect} until a yes is "
            f"recorded (POST .../consent with channel {consent!r})")
