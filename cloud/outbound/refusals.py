"""Every refused target counted and logged the same way, wherever it was refused."""

from __future__ import annotations

import logging

from cloud.metrics import OUTBOUND_REFUSALS
from cloud.outbound.policy import OutboundRefusedError

log = logging.getLogger(__name__)


def count_refusal(refusal: OutboundRefusedError, *, client: str, stage: str, tenant: str) -> None:
    """Count the refusal (`vitrina_outbound_refusals{client, stage, rule}`) and log it
    with its reason, which names the host but never a URL's path (a Web Push endpoint's
    path is a per-browser capability)."""
    OUTBOUND_REFUSALS.labels(client=client, stage=stage, rule=refusal.rule.value).inc()
    log.warning("tenant %s: %s target refused at %s (%s): %s", tenant, client, stage,
                refusal.rule.value, refusal.reason)
