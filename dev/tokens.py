"""`vitrina-cloud dev token`: a customer token, signed as the shop's backend signs one when
its user signs in to the app, with the key the developer environment registered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloud.auth.customer_tokens import sign_customer_token
from cloud.auth.models import TokenAlgorithm
from dev.session import DevSession

#: A token the shop's backend signs lasts minutes: the app asks again when it expires.
TOKEN_LIFETIME = timedelta(minutes=15)


def customer_token(session: DevSession, subject: str, *, now: datetime | None = None) -> str:
    """What the shop's backend hands its app when `subject` (its own user id) signs in."""
    return sign_customer_token(
        private_key_pem=session.token_private_pem, algorithm=TokenAlgorithm.ES256,
        kid=session.token_kid, tenant=session.tenant, subject=subject,
        now=now or datetime.now(UTC), lifetime=TOKEN_LIFETIME,
    )
