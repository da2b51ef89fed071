"""The store beacon's rotating id and payloads, as gateway and cloud both compute them."""

from __future__ import annotations

import hashlib
import hmac
import struct
from uuid import UUID

import pytest
from pydantic import ValidationError

from shared.beacon import (
    ROTATION_PERIOD_S,
    StoreBeaconConfig,
    accepted_periods,
    advert_at,
    eddystone_eid_service_data,
    eid_matches,
    ibeacon_manufacturer_data,
    ibeacon_matches,
    period_at,
    rotating_id,
    store_beacon_key,
)
from shared.pseudonym import TenantKey
from shared.status import GatewayConfig

KEY = TenantKey("k1", bytes(range(32)))
SHOP_UUID = UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")


def test_the_store_key_and_the_rotating_id_are_hmac_sha256_as_documented() -> None:
    store_key = store_beacon_key(KEY, tenant="acme", store="madrid-1")
    assert store_key == hmac.new(KEY.secret, b"vitrina store beacon v1\x00acme\x00madrid-1",
                                 hashlib.sha256).digest()
    expected = hmac.new(store_key, b"period" + (1234).to_bytes(8, "big"),
                        hashlib.sha256).digest()[:8]
    assert rotating_id(store_key, 1234) == expected


def test_each_store_and_each_key_rotate_differently() -> None:
    ids = {
        rotating_id(store_beacon_key(key, tenant="acme", store=store), 99)
        for key in (KEY, TenantKey("k2", bytes(range(1, 33))))
        for store in ("madrid-1", "madrid-2")
    }
    assert len(ids) == 4


def test_the_advert_changes_at_each_period_boundary() -> None:
    store_key = store_beacon_key(KEY, tenant="acme", store="madrid-1")
    start = 1_800_000_000 - 1_800_000_000 % ROTATION_PERIOD_S
    first = advert_at(store_key, start + 1)
    assert advert_at(store_key, start + ROTATION_PERIOD_S - 0.001) == first
    assert first.next_change_at == start + ROTATION_PERIOD_S
    second = advert_at(store_key, start + ROTATION_PERIOD_S)
    assert second.period == first.period + 1
    assert second.rotating_id != first.rotating_id
    assert (first.major, first.minor) == struct.unpack(">HH", first.rotating_id[:4])


def test_the_cloud_accepts_the_current_and_the_previous_period_only() -> None:
    store_key = store_beacon_key(KEY, tenant="acme", store="madrid-1")
    now = 1_800_000_000.0
    current = period_at(now)
    assert accepted_periods(now) == (current, current - 1)
    advert = advert_at(store_key, now - ROTATION_PERIOD_S)
    assert ibeacon_matches(store_key, current - 1, advert.major, advert.minor)
    assert not ibeacon_matches(store_key, current, advert.major, advert.minor)
    assert eid_matches(store_key, current - 1, advert.rotating_id)
    assert not eid_matches(store_key, current - 2, advert.rotating_id)


def test_ibeacon_and_eddystone_payloads_have_the_standard_layout() -> None:
    data = ibeacon_manufacturer_data(SHOP_UUID, 0x1234, 0xABCD, -59)
    assert data[:2] == b"\x02\x15"
    assert UUID(bytes=data[2:18]) == SHOP_UUID
    assert data[18:] == b"\x12\x34\xab\xcd" + struct.pack("b", -59)
    frame = eddystone_eid_service_data(bytes(range(8)), -59)
    assert frame == b"\x30" + struct.pack("b", -18) + bytes(range(8))
    with pytest.raises(ValueError, match="8 bytes"):
        eddystone_eid_service_data(b"\x00", -59)


def test_the_gateway_config_carries_the_beacon_and_refuses_unknown_fields() -> None:
    config = GatewayConfig.model_validate(
        {"beacon": {"uuid": str(SHOP_UUID), "eddystone": True, "key_id": "k1"}})
    assert config.beacon == StoreBeaconConfig(uuid=SHOP_UUID, eddystone=True, key_id="k1")
    assert GatewayConfig.model_validate({}).beacon is None
    with pytest.raises(ValidationError):
        GatewayConfig.model_validate({"beacon": {"uuid": str(SHOP_UUID), "major": 1}})
