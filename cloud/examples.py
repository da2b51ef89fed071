"""The examples the OpenAPI document shows for every request and answer.

Each request and answer model carries its own, next to its fields:

    model_config = ConfigDict(json_schema_extra=example({"name": "Madrid Centro", ...}))

so a client generated from the document, or a developer reading `/docs`, sees a body the
API really takes or gives. They tell one story (the acceptance journey's Juan, at the
Madrid Centro store of the tenant `acme`), so the values shared by several models are
here. tests/cloud/api/test_openapi_examples.py checks every example against its own
schema, and that no body goes without one.
"""

from __future__ import annotations

from typing import Any

#: The customer of every example (a public id, as the API names customers).
CUSTOMER_ID = "cus_3f9a1c2b7d4e4f60a1b2c3d4e5f60718"

#: A P-256 public key, as a shop's backend registers it for its customer tokens.
PUBLIC_KEY_PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+RkeYvl+7Sx8irtIEpMKkvF/ELU3\n"
    "20cAExogUpd82j4lhDCVi6xf2Mzf3li3YNoW+a7sXTZfN/jCV8gS8t9qYw==\n"
    "-----END PUBLIC KEY-----\n"
)

#: A geofence around the store's door: a circle, entered after five minutes' dwell.
GEOFENCE: dict[str, Any] = {
    "store": "madrid-centro", "dwell_after_s": 300,
    "shape": {"circle": {"lat": 40.4168, "lon": -3.7038, "radius_m": 100}},
}

#: The cart reminder: 15 minutes after an abandoned cart, a push with a 24-hour coupon.
SCENARIO: dict[str, Any] = {
    "key": "cart-reminder", "name": "Cart reminder with a coupon",
    "entry": {"event": "cart.abandoned", "cooldown": "P1D"},
    "conditions": {"not": {"tag": "staff"}},
    "exit_on": ["order.created"], "holdout_percent": 10,
    "variants": [{"key": "a"}, {"key": "b", "weight": 2}],
    "caps": [{"max": 2, "per": "P7D"}],
    "steps": [
        {"id": "pause", "type": "wait", "for": "PT15M"},
        {"id": "remind", "type": "send", "channels": ["push"], "template": "cart",
         "offer": {"key": "dryers-20"}, "coupon": {"valid_for": "PT24H"}},
        {"id": "notify-shop", "type": "webhook", "url": "https://shop.example/hooks/vitrina"},
    ],
}


#: A segment the cross-sell offer is kept to: recent washer buyers reachable by push.
SEGMENT: dict[str, Any] = {
    "name": "Washer buyers, last 30 days, push",
    "description": "Bought a washing machine in the last 30 days and accepts pushes",
    "conditions": {"all": [{"purchased": {"category": "washers", "within": "P30D"}},
                           {"consent": "push"}]},
}


def example(*values: Any) -> dict[str, Any]:
    """What `json_schema_extra` adds to a model's schema: its examples (JSON Schema's
    `examples`, which OpenAPI 3.1 and FastAPI's `/docs` show)."""
    return {"examples": list(values)}
