"""What a journey log's outcome means, in words: the journey log keeps a code and a
detail per step (`outcome`, `detail`); the API adds this sentence, so that a held or
suppressed send says why where it is read (`cloud.messages.reasons` does the same for the
messages themselves)."""

from __future__ import annotations

from collections.abc import Mapping

#: The outcomes of a step that did not send (or credit), or did not send now, and what
#: they mean.
#: `{detail}` is the log row's detail.
OUTCOME_TEXTS: Mapping[str, str] = {
    "held": "held for the customer's quiet hours, not dropped ({detail})",
    "held_out": "in the scenario's holdout group ({detail}): nothing is sent, so that its "
                "conversions can be compared with the others'",
    "capped": "not sent: a frequency cap is reached ({detail})",
    "no_consent": "not sent: the customer has not granted any of the step's channels "
                  "({detail})",
    "no_location_consent": "not sent: a store visit or a geofence started the journey, and "
                           "the customer has not granted location_marketing",
    "refused": "not sent: the customer said no since the request began ({detail})",
    "no_address": "not sent: the customer has consent but no address on the step's "
                  "channels ({detail}): no device registered, or the profile field is empty",
    "no_channel": "not sent: none of the step's channels could be used ({detail})",
    "no_template": "not sent: no template {detail} for the customer's language",
    "missing_field": "not sent: the template needs fields this journey does not have "
                     "({detail})",
    "render_failed": "not sent: the template could not be rendered ({detail})",
    "no_offer": "not sent: no offer is left, or only for something the customer already "
                "bought ({detail})",
    "offer_exhausted": "not sent: the offer {detail} has no coupons left",
    "no_customer": "not sent: the customer no longer exists",
    "held_past_deadline": "not sent: quiet hours would have held it past the time it is "
                          "worth sending ({detail}); counted as expired",
    "not_credited": "no credit: the order that would have earned it was cancelled or "
                    "refunded in full before this step ran ({detail})",
}


def outcome_reason(outcome: str, detail: str | None) -> str | None:
    """The sentence for a step that held or did not send; None for the others."""
    text = OUTCOME_TEXTS.get(outcome)
    if text is None:
        return None
    if not detail:
        text = text.replace(" ({detail})", "").replace(" {detail}", "")
    return text.replace("{detail}", detail or "")
