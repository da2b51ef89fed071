"""The in-store greeting as the shop configures it: a push template and a scenario, saved
through the API like any admin would (the demo and the end-to-end test both use it)."""

from __future__ import annotations

from typing import Any

import httpx

TEMPLATE_KEY = "welcome"
#: One push per visit (several gateways seeing one shopper are one visit: the cooldown),
#: pointless once the shopper has left (the expiry).
SCENARIO: dict[str, Any] = {
    "key": "store-welcome", "name": "Greet app users who walk into a store",
    "entry": {"event": "presence.enter", "reentry": "always", "cooldown": "PT12H"},
    "steps": [{"id": "greet", "type": "send", "channels": ["push"], "template": TEMPLATE_KEY,
               "expires_after": "PT30M"}],
}
TEMPLATE_PARTS = {
    "title": "{{ store.name }}",
    "body": "Welcome, {{ customer.first_name }}! Good to see you.",
}


def configure_welcome(api: str, tenant: str, admin_key: str) -> None:
    """Save the template, then the scenario that uses it (it is refused without it)."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    saved = httpx.put(
        f"{api}/tenants/{tenant}/templates/{TEMPLATE_KEY}/push/en-GB", headers=headers,
        json={"parts": TEMPLATE_PARTS}, timeout=10.0,
    )
    saved.raise_for_status()
    saved = httpx.put(
        f"{api}/tenants/{tenant}/scenarios/{SCENARIO['key']}", headers=headers, json=SCENARIO,
        timeout=10.0,
    )
    saved.raise_for_status()
