"""What a shop's backend does for its app: it holds a private key whose public half is
registered with the tenant, and signs a customer token for its user when they sign in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cloud.auth.customer_tokens import MAX_TOKEN_LIFETIME, generate_key_pair, sign_customer_token
from cloud.auth.models import TokenAlgorithm


@dataclass(frozen=True)
class ShopBackend:
    """One of the tenant's signing keys, and tokens made with it."""

    tenant: str
    kid: str = "shop-key-1"
    algorithm: TokenAlgorithm = TokenAlgorithm.ES256
    keys: tuple[str, str] = field(default=("", ""))

    @classmethod
    def new(cls, tenant: str, *, kid: str = "shop-key-1",
            algorithm: TokenAlgorithm = TokenAlgorithm.ES256) -> ShopBackend:
        return cls(tenant=tenant, kid=kid, algorithm=algorithm,
                   keys=generate_key_pair(algorithm))

    @property
    def public_key_pem(self) -> str:
        return self.keys[1]

    def registration(self) -> dict[str, str]:
        """The body of POST /tenants/{tenant}/customer-token-keys."""
        return {"kid": self.kid, "algorithm": self.algorithm.value,
                "public_key_pem": self.public_key_pem}

    def token(self, subject: str, *, now: datetime,
              lifetime: timedelta = MAX_TOKEN_LIFETIME) -> str:
        return sign_customer_token(
            private_key_pem=self.keys[0], algorithm=self.algorithm, kid=self.kid,
            tenant=self.tenant, subject=subject, now=now, lifetime=lifetime,
        )

    def headers(self, subject: str, *, now: datetime) -> dict[str, str]:
        """The header the app sends with its app key, for its signed-in `subject`."""
        return {"X-Customer-Token": self.token(subject, now=now)}
