"""Tracking what happens to sent messages: opens, clicks, conversions, and the funnel.

    token = new_tracking_token(idempotency_key, settings.tracking.secret.get_secret_value())
    link = tracked_link(settings.tracking.public_base_url, token)     # template `link`
    unsubscribe = unsubscribe_url(settings.tracking.public_base_url, token)

The HTTP side (redirects, pixel, open reports, receipts, funnel) is `cloud.tracking.routes`.
"""

from cloud.tracking.attribution import ATTRIBUTION_WINDOW, attribute_order
from cloud.tracking.events import (
    record_click,
    record_open,
    record_open_by_id,
    record_unsubscribe,
    trigger_attributes,
)
from cloud.tracking.funnel import FunnelRow, funnel
from cloud.tracking.tokens import (
    new_tracking_token,
    open_pixel_url,
    open_report_url,
    tracked_link,
    unsubscribe_url,
)

__all__ = [
    "ATTRIBUTION_WINDOW",
    "FunnelRow",
    "attribute_order",
    "funnel",
    "new_tracking_token",
    "open_pixel_url",
    "open_report_url",
    "record_click",
    "record_open",
    "record_open_by_id",
    "record_unsubscribe",
    "tracked_link",
    "trigger_attributes",
    "unsubscribe_url",
]
