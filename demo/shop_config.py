"""The demo shop's configuration (stores, templates, offers, complements, scenarios) and
the one way it is loaded: through the public API with the shop's admin key, exactly as a
back office would. The acceptance test and `make demo` both use `load_shop`.

`client` is anything with httpx's `put(url, json=...)`: an `httpx.Client` on the running
API, or FastAPI's `TestClient`, each already carrying the admin key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

#: The shop's configuration file, next to this module.
SHOP_FILE = Path(__file__).with_name("scenarios") / "shop.json"
#: The language the demo shop writes its templates in (others fall back to it).
SHOP_LOCALE = "en-GB"


class _Response(Protocol):
    status_code: int
    text: str


class _Client(Protocol):
    def put(self, url: str, *, json: Any) -> Any: ...


class ShopConfigError(RuntimeError):
    """The API refused part of the configuration (the message says which part and why)."""


@dataclass(frozen=True, slots=True)
class Loaded:
    stores: int
    offers: int
    complements: int
    templates: int
    scenarios: int


def shop_config(path: Path = SHOP_FILE) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _put(client: _Client, url: str, body: Any) -> None:
    response: _Response = client.put(url, json=body)
    if response.status_code not in (200, 201):
        raise ShopConfigError(f"PUT {url} -> {response.status_code}: {response.text}")


def load_shop(
    client: _Client, *, tenant: str, config: Mapping[str, Any] | None = None,
    locale: str = SHOP_LOCALE,
) -> Loaded:
    """PUT everything, in dependency order: scenarios are checked against the templates and
    offers they name, so those go first. Idempotent: loading twice changes nothing but the
    scenarios' version numbers."""
    shop = config if config is not None else shop_config()
    base = f"/tenants/{tenant}"
    for key, store in shop["stores"].items():
        _put(client, f"{base}/stores/{key}", store)
    for key, offer in shop["offers"].items():
        _put(client, f"{base}/offers/{key}", offer)
    _put(client, f"{base}/complements", shop["complements"])
    templates = 0
    for key, channels in shop["templates"].items():
        for channel, parts in channels.items():
            _put(client, f"{base}/templates/{key}/{channel}/{locale}", {"parts": parts})
            templates += 1
    for scenario in shop["scenarios"]:
        _put(client, f"{base}/scenarios/{scenario['key']}", scenario)
    return Loaded(
        stores=len(shop["stores"]), offers=len(shop["offers"]),
        complements=len(shop["complements"]), templates=templates,
        scenarios=len(shop["scenarios"]),
    )
