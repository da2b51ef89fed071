"""The gateway's tenant keys: those of its config file, then those the cloud delivers.

The cloud delivers keys in the gateway's config (`GatewayConfig.keys`), each sealed to
this gateway's own X25519 key pair (`shared.sealing`; the private part is the bundle's
`seal_key_file`). A config that carries keys names the whole set the gateway is to
hold: they are opened (all, or the config is refused and the last good one kept),
written to the key store, and only then put to use; a key held before that is not in
the set is erased from the pipeline and from the store, and one that came from the
config file is remembered as dropped, so a restart does not load it again.

The store is a JSON file readable by the agent only (0600, written through a temporary
file renamed into place). It holds the keys still sealed, with the config version they
are bound to: at rest they open only with the gateway's private key, and a store copied
to another gateway, or left behind by an earlier enrolment, opens nothing there and is
ignored (the retained config delivers the keys again on connect).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edge.private_files import PRIVATE_FILE_MODE, write_private
from edge.settings import EdgeSettings
from shared.errors import ContractError
from shared.pseudonym import KEY_ID_PATTERN, TenantKey
from shared.sealing import (
    SealContext,
    SealedKey,
    load_private_key,
    open_key,
    public_key_text,
)
from shared.status import GatewayConfig

log = logging.getLogger(__name__)

STORE_FORMAT = 1
STORE_FILE_MODE = PRIVATE_FILE_MODE


class KeyDeliveryError(ValueError):
    """Keys in a config that this gateway cannot take: the config is refused with this."""


class KeyStoreError(Exception):
    """The gateway's sealing key cannot be read: the agent cannot start as configured."""


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The keys the pipeline pseudonymizes with: `active` and the others still held."""

    keys: Mapping[str, TenantKey]
    active: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """Keys a config delivered, opened and ready to be committed."""

    ring: KeyRing
    sealed: tuple[str, ...]
    version: int


class GatewayKeys:
    """The gateway's key ring, from its config file, its key store and the cloud."""

    def __init__(self, settings: EdgeSettings) -> None:
        identity = settings.identity
        self._identity = (identity.tenant, identity.store, identity.gateway)
        self.store_path = settings.key_store_path
        self._private = _read_private_key(settings.keys.seal_key_file)
        self._file_keys = settings.keys.tenant_keys()
        self._file_active = settings.keys.active
        #: Ids the cloud dropped that the config file still names: never loaded again.
        self.dropped: frozenset[str] = frozenset()
        self.ring = self._initial_ring()

    @property
    def can_receive(self) -> bool:
        """Whether the cloud can deliver keys to this gateway (it has a sealing key)."""
        return self._private is not None

    @property
    def public_key(self) -> str | None:
        return None if self._private is None else public_key_text(self._private)

    def _context(self, version: int) -> SealContext:
        tenant, store, gateway = self._identity
        return SealContext(tenant=tenant, store=store, gateway=gateway, config_version=version)

    # -- start ---------------------------------------------------------------------------

    def _initial_ring(self) -> KeyRing:
        file_ring = KeyRing(keys=dict(self._file_keys), active=self._file_active)
        stored = self._read_store()
        if stored is None:
            return file_ring
        try:
            delivered = self._open(stored["sealed"], version=stored["config_version"],
                                   active=stored["active"])
        except (KeyDeliveryError, ContractError) as error:
            log.error("the key store does not open with this gateway's sealing key; using "
                      "the config file's keys until the cloud delivers them again",
                      extra={"path": str(self.store_path), "error": str(error)})
            return file_ring
        self.dropped = frozenset(stored["dropped"]) - set(delivered.ring.keys)
        self._file_keys = {key_id: key for key_id, key in self._file_keys.items()
                           if key_id not in self.dropped}
        return KeyRing(keys={**self._file_keys, **delivered.ring.keys},
                       active=delivered.ring.active)

    def _read_store(self) -> dict[str, Any] | None:
        """The store's document, or None when there is none this gateway can use."""
        if self._private is None or not self.store_path.exists():
            return None
        try:
            document = json.loads(self.store_path.read_text(encoding="utf-8"))
            stored = _check_store(document)
        except (OSError, ValueError) as error:
            log.error("cannot read the key store; using the config file's keys",
                      extra={"path": str(self.store_path), "error": str(error)})
            return None
        if (tuple(stored["identity"]) != self._identity
                or stored["seal_public_key"] != self.public_key):
            log.warning("the key store belongs to another enrolment; ignoring it",
                        extra={"path": str(self.store_path)})
            return None
        return stored

    # -- delivery ------------------------------------------------------------------------

    def open_delivered(self, config: GatewayConfig) -> Delivery:
        """Open the keys `config` carries (it must carry some); KeyDeliveryError or
        ContractError, naming the problem, if any of them cannot be taken."""
        assert config.keys is not None
        if self._private is None:
            raise KeyDeliveryError(
                "this gateway has no sealing key (it was enrolled before keys could be "
                "delivered remotely): re-enrol it to receive keys")
        if config.version is None:
            raise KeyDeliveryError("sealed keys come only in a versioned config")
        active = config.active_key_id or self.ring.active
        return self._open(config.keys, version=config.version, active=active)

    def _open(self, texts: Sequence[str], *, version: int, active: str) -> Delivery:
        assert self._private is not None
        context = self._context(version)
        keys: dict[str, TenantKey] = {}
        for text in texts:
            sealed = SealedKey.from_text(text)
            if sealed.key_id in keys:
                raise KeyDeliveryError(f"key {sealed.key_id!r} is delivered twice")
            keys[sealed.key_id] = open_key(sealed, private_key=self._private, context=context)
        if active not in keys:
            raise KeyDeliveryError(
                f"active key id {active!r} is not among the keys the config delivers")
        return Delivery(ring=KeyRing(keys=keys, active=active), sealed=tuple(texts),
                        version=version)

    def commit(self, delivery: Delivery) -> KeyRing:
        """Keep `delivery` in the store (KeyDeliveryError if it cannot be written: the
        config is then refused), then make it the ring; the keys it leaves out are gone."""
        new_ids = set(delivery.ring.keys)
        dropped = (self.dropped | (set(self.ring.keys) - new_ids)
                   | (set(self._file_keys) - new_ids)) - new_ids
        tenant, store, gateway = self._identity
        document = {
            "format": STORE_FORMAT, "identity": [tenant, store, gateway],
            "seal_public_key": self.public_key, "config_version": delivery.version,
            "active": delivery.ring.active, "sealed": list(delivery.sealed),
            "dropped": sorted(dropped),
        }
        try:
            write_private(self.store_path, json.dumps(document, indent=1) + "\n")
        except OSError as error:
            raise KeyDeliveryError(
                f"cannot keep the delivered keys in {self.store_path}: {error.strerror}"
            ) from None
        erased = sorted(set(self.ring.keys) - new_ids)
        self.dropped = frozenset(dropped)
        self._file_keys = {key_id: key for key_id, key in self._file_keys.items()
                           if key_id in new_ids}
        self.ring = delivery.ring
        if erased:
            log.info("erased keys the cloud no longer lists", extra={"key_ids": erased})
        return self.ring


def _read_private_key(path: Path | None) -> X25519PrivateKey | None:
    if path is None:
        return None
    try:
        return load_private_key(path.read_bytes())
    except OSError as error:
        raise KeyStoreError(f"cannot read the sealing key {path}: {error.strerror}") from None
    except ContractError as error:
        raise KeyStoreError(f"{path}: {error}") from None


def _check_store(document: Any) -> dict[str, Any]:
    """The store's document if it has the expected shape; ValueError otherwise."""
    if not isinstance(document, dict) or document.get("format") != STORE_FORMAT:
        raise ValueError(f"not a key store of format {STORE_FORMAT}")
    identity, sealed, dropped = (document.get("identity"), document.get("sealed"),
                                 document.get("dropped"))
    version, active = document.get("config_version"), document.get("active")
    valid = (
        isinstance(identity, list) and len(identity) == 3
        and all(isinstance(part, str) for part in identity)
        and isinstance(sealed, list) and sealed and all(isinstance(t, str) for t in sealed)
        and isinstance(dropped, list)
        and all(isinstance(i, str) and KEY_ID_PATTERN.fullmatch(i) for i in dropped)
        and isinstance(version, int) and not isinstance(version, bool) and version >= 1
        and isinstance(active, str) and isinstance(document.get("seal_public_key"), str)
    )
    if not valid:
        raise ValueError("the key store's document is malformed")
    return document
