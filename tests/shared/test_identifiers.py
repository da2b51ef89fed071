import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import ContractError
from shared.identifiers import (
    IdentifierKind,
    app_identifier,
    ble_address_identifier,
    ble_address_identifier_from_bytes,
    canonical_identifier,
    canonical_mac,
    eddystone_identifier,
    ibeacon_identifier,
    is_randomized_mac,
    wifi_identifier,
    wifi_identifier_from_bytes,
)


@pytest.mark.parametrize(
    "text", ["AA:BB:CC:DD:EE:FF", "aa-bb-cc-dd-ee-ff", "aabbccddeeff", " aa:bb:cc:dd:ee:ff "]
)
def test_mac_spellings_share_one_canonical_form(text: str) -> None:
    assert canonical_mac(text) == "aa:bb:cc:dd:ee:ff"


@pytest.mark.parametrize(
    "text", ["", "aa:bb:cc:dd:ee", "aa:bb-cc:dd:ee:ff", "gg:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:ff:00"]
)
def test_malformed_macs_are_rejected(text: str) -> None:
    with pytest.raises(ContractError, match="not a 48-bit MAC"):
        canonical_mac(text)


def test_locally_administered_bit_marks_randomized() -> None:
    assert is_randomized_mac("da:a1:19:00:00:01")  # 0xda has bit 1 set
    assert not is_randomized_mac("00:1a:11:00:00:01")


def test_probe_and_association_of_one_station_share_an_identifier() -> None:
    assert (
        canonical_identifier(IdentifierKind.WIFI_PROBE, "00-1A-11-00-00-01")
        == canonical_identifier(IdentifierKind.WIFI_ASSOCIATION, "00:1a:11:00:00:01")
        == wifi_identifier("001a11000001")
    )


def test_beacon_identifiers() -> None:
    beacon_uuid = uuid.UUID("f7826da6-4fa2-4e98-8024-bc5b71e0893e")
    assert ibeacon_identifier(str(beacon_uuid).upper(), 1, 2) == f"ibeacon:{beacon_uuid}:1:2"
    assert (
        canonical_identifier(IdentifierKind.BLE_IBEACON, f"{beacon_uuid}:1:2")
        == f"ibeacon:{beacon_uuid}:1:2"
    )
    assert eddystone_identifier("EDD1EBEAC04E5DEFA017", "0BDB87539B67") == (
        "eddystone:edd1ebeac04e5defa017:0bdb87539b67"
    )
    assert app_identifier("juan-app-0001") == "app:juan-app-0001"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ibeacon_identifier("not-a-uuid", 1, 2), "not a UUID"),
        (lambda: ibeacon_identifier(uuid.uuid4(), 70000, 2), "16-bit"),
        (lambda: eddystone_identifier("00", "11"), "10-byte namespace"),
        (lambda: app_identifier("a b"), "install id"),
    ],
)
def test_bad_beacon_values_are_rejected(call: object, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        call()  # type: ignore[operator]


@given(st.text(max_size=40))
def test_canonical_mac_never_raises_anything_but_contract_error(text: str) -> None:
    try:
        result = canonical_mac(text)
    except ContractError:
        return
    assert len(result) == 17


@settings(max_examples=500)
@given(st.binary(min_size=6, max_size=6))
def test_identifiers_from_bytes_equal_those_from_text(address: bytes) -> None:
    assert wifi_identifier_from_bytes(address) == wifi_identifier(address.hex().upper())
    assert ble_address_identifier_from_bytes(address) == ble_address_identifier(address.hex("-"))


def test_identifiers_from_bytes_need_six_bytes() -> None:
    assert wifi_identifier_from_bytes(bytes.fromhex("DAA1195E0001")) == "wifi:da:a1:19:5e:00:01"
    with pytest.raises(ContractError, match="six bytes"):
        wifi_identifier_from_bytes(b"\x00" * 5)
