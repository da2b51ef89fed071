"""BLE link-layer decoding, against packets built by scapy and bytes built by hand."""

from __future__ import annotations

import struct
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.eddystone import Eddystone_Frame, Eddystone_UID
from scapy.layers.bluetooth import (
    EIR_CompleteLocalName,
    EIR_Flags,
    EIR_Hdr,
    EIR_Manufacturer_Specific_Data,
    EIR_ServiceData16BitUUID,
    EIR_ServiceData32BitUUID,
    EIR_ServiceData128BitUUID,
)
from scapy.layers.bluetooth4LE import (
    BTLE,
    BTLE_ADV,
    BTLE_ADV_DIRECT_IND,
    BTLE_ADV_IND,
    BTLE_ADV_NONCONN_IND,
    BTLE_ADV_SCAN_IND,
    BTLE_CONNECT_REQ,
    BTLE_DATA,
    BTLE_RF,
    BTLE_SCAN_REQ,
    BTLE_SCAN_RSP,
)

from edge.capture.beacons import BeaconConfig
from edge.capture.blell import (
    LINKTYPE_BLUETOOTH_LE_LL,
    PHDR_LEN,
    decode_ble_ll,
    decode_ble_ll_frame,
    decode_ble_phdr_frame,
    parse_ad_structures,
)
from edge.capture.decode import DecodeStats
from edge.capture.outcomes import (
    IdentityCaches,
    RejectReason,
    Salvaged,
    SalvageReason,
    SkipReason,
)
from edge.sighting import Sighting
from shared.identifiers import (
    IdentifierKind,
    app_identifier,
    ble_address_identifier,
    eddystone_identifier,
    ibeacon_identifier,
)
from tests.edge.capture.support import mutate

AT = 1_709_373_600.5
RPA = "4a:22:33:44:55:66"
PUBLIC = "3c:5a:b4:00:00:02"
APP_UUID = uuid.UUID("9d8616a8-4f20-4006-be4f-9bc6656b19a9")
APP_SERVICE = "4d9a6c2e-0b7f-4c1d-9a55-76697472696e"
CONFIG = BeaconConfig(app_ibeacon_uuid=APP_UUID, app_service_uuid=APP_SERVICE)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FLAGS = EIR_Hdr() / EIR_Flags(flags=["general_disc_mode", "br_edr_not_supported"])


def ibeacon(proximity: uuid.UUID, major: int, minor: int) -> Any:
    payload = b"\x02\x15" + proximity.bytes + struct.pack(">HHb", major, minor, -59)
    return EIR_Hdr() / EIR_Manufacturer_Specific_Data(company_id=0x004C) / payload


def link_layer(pdu: Any, *, random_address: bool = True, crc: int | None = None) -> bytes:
    return bytes(BTLE(access_addr=0x8E89BED6, crc=crc) / BTLE_ADV(
        TxAdd=1 if random_address else 0) / pdu)


def with_phdr(packet: bytes, rssi: int = -63, **flags: int) -> bytes:
    options: dict[str, int] = {"sig_power_valid": 1, "crc_checked": 1, "crc_valid": 1}
    options.update(flags)
    header = BTLE_RF(rf_channel=12, signal=rssi, noise=-100, dewhitened=1)
    for name, value in options.items():
        setattr(header, name, value)
    return bytes(header) + packet


Outcome = Sighting | Salvaged | RejectReason | SkipReason


def decode(frame: bytes, config: BeaconConfig = CONFIG) -> Outcome:
    return decode_ble_phdr_frame(frame, AT, config, "ble")


def summary(outcome: object) -> tuple[object, ...]:
    assert isinstance(outcome, Sighting), outcome
    return outcome.kind, outcome.canonical_id, outcome.randomized, outcome.rssi


# ---------------------------------------------------------------- sightings


def test_adv_ind_with_a_resolvable_private_address() -> None:
    frame = with_phdr(link_layer(BTLE_ADV_IND(AdvA=RPA, data=[FLAGS])))
    assert decode(frame) == Sighting(AT, IdentifierKind.BLE_ADDRESS, ble_address_identifier(RPA),
                                     True, -63.0, "ble")
    # scapy reads the same address back from the on-air (little-endian) bytes
    assert BTLE_RF(frame)[BTLE_ADV_IND].AdvA == RPA


def test_public_address_is_not_randomized() -> None:
    frame = with_phdr(link_layer(BTLE_ADV_IND(AdvA=PUBLIC, data=[FLAGS]), random_address=False))
    assert summary(decode(frame)) == (IdentifierKind.BLE_ADDRESS, ble_address_identifier(PUBLIC),
                                      False, -63.0)


def test_ibeacon_in_adv_nonconn_ind() -> None:
    beacon = uuid.UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")
    frame = with_phdr(link_layer(BTLE_ADV_NONCONN_IND(AdvA=RPA, data=[FLAGS,
                                                                      ibeacon(beacon, 100, 7)])))
    assert summary(decode(frame)) == (IdentifierKind.BLE_IBEACON,
                                      ibeacon_identifier(beacon, 100, 7), False, -63.0)


def test_the_apps_ibeacon_carries_its_install_id() -> None:
    frame = with_phdr(link_layer(BTLE_ADV_NONCONN_IND(AdvA=RPA, data=[ibeacon(APP_UUID, 0x1F2E,
                                                                              0x3D4C)])))
    assert summary(decode(frame)) == (IdentifierKind.BLE_APP, app_identifier("1f2e3d4c"), False,
                                      -63.0)


def test_scan_response_with_the_apps_service_data() -> None:
    service = EIR_Hdr() / EIR_ServiceData128BitUUID(svc_uuid=uuid.UUID(APP_SERVICE)) / (
        b"juan-app-0001")
    frame = with_phdr(link_layer(BTLE_SCAN_RSP(AdvA=RPA, data=[service])))
    assert summary(decode(frame)) == (IdentifierKind.BLE_APP, app_identifier("juan-app-0001"),
                                      False, -63.0)


def test_eddystone_uid_in_adv_scan_ind() -> None:
    namespace, instance = bytes(range(1, 11)), bytes(range(20, 26))
    uid = Eddystone_Frame() / Eddystone_UID(tx_power=-20, namespace=namespace, instance=instance)
    service = EIR_Hdr() / EIR_ServiceData16BitUUID(svc_uuid=0xFEAA) / uid
    frame = with_phdr(link_layer(BTLE_ADV_SCAN_IND(AdvA=PUBLIC, data=[FLAGS, service]),
                                 random_address=False))
    assert summary(decode(frame)) == (
        IdentifierKind.BLE_EDDYSTONE, eddystone_identifier(namespace.hex(), instance.hex()),
        False, -63.0)


def test_rssi_is_unknown_unless_the_sniffer_marks_it_valid() -> None:
    packet = link_layer(BTLE_ADV_IND(AdvA=RPA, data=[FLAGS]))
    assert summary(decode(with_phdr(packet, sig_power_valid=0)))[3] is None
    assert summary(decode(with_phdr(packet, crc_checked=0, crc_valid=0)))[3] == -63.0


def test_plain_link_layer_has_no_rssi() -> None:
    frame = link_layer(BTLE_ADV_IND(AdvA=RPA, data=[FLAGS]))
    assert decode_ble_ll_frame(frame, AT, CONFIG, "ble") == Sighting(
        AT, IdentifierKind.BLE_ADDRESS, ble_address_identifier(RPA), True, None, "ble")
    assert LINKTYPE_BLUETOOTH_LE_LL == 251


def test_ad_structures_like_bleak_reports_them() -> None:
    data = b"".join(bytes(element) for element in [
        FLAGS,
        EIR_Hdr() / EIR_Manufacturer_Specific_Data(company_id=0x0006) / b"\x01\x09",
        EIR_Hdr() / EIR_ServiceData16BitUUID(svc_uuid=0xFEF3) / b"\x4a\x17",
        EIR_Hdr() / EIR_ServiceData32BitUUID(svc_uuid=0x12345678) / b"\x99",
        EIR_Hdr() / EIR_CompleteLocalName(local_name=b"Band 7"),
    ]) + b"\x00\x00\x00"  # zero length: the rest is padding
    parsed = parse_ad_structures(data, 0, len(data))
    assert parsed == (
        {0x0006: b"\x01\x09"},
        {"0000fef3-0000-1000-8000-00805f9b34fb": b"\x4a\x17",
         "12345678-0000-1000-8000-00805f9b34fb": b"\x99"},
        False,
    )


def test_cache_returns_the_same_outcomes() -> None:
    frames = [
        with_phdr(link_layer(BTLE_ADV_IND(AdvA=RPA, data=[FLAGS])), rssi=-50),
        with_phdr(link_layer(BTLE_ADV_IND(AdvA=RPA, data=[FLAGS])), rssi=-70),
        with_phdr(link_layer(BTLE_SCAN_REQ(ScanA=RPA, AdvA=PUBLIC))),
        with_phdr(link_layer(BTLE_ADV_IND(AdvA=RPA, data=[FLAGS]))[:-1]),
    ]
    caches = IdentityCaches()
    cached = [decode_ble_phdr_frame(f, AT, CONFIG, "ble", caches) for f in frames]
    assert cached == [decode(f) for f in frames]
    assert len(caches.adverts) == 3  # same advert bytes at two RSSIs share one entry
    assert len(caches.ble_addresses) == 1  # the one advertiser (a scan request names none)
    assert decode_ble_ll(frames[0], PHDR_LEN, AT, None, CONFIG, "ble", caches) == Sighting(
        AT, IdentifierKind.BLE_ADDRESS, ble_address_identifier(RPA), True, None, "ble")


# ---------------------------------------------------------------- skipped


def test_non_advertiser_pdus_are_skipped() -> None:
    for pdu in (
        BTLE_SCAN_REQ(ScanA=RPA, AdvA=PUBLIC),
        BTLE_ADV_DIRECT_IND(AdvA=PUBLIC, InitA=RPA),
        BTLE_CONNECT_REQ(InitA=RPA, AdvA=PUBLIC),
    ):
        assert decode(with_phdr(link_layer(pdu))) is SkipReason.BLE_NOT_ADVERTISER


def test_data_channel_and_extended_advertising_are_skipped() -> None:
    data = bytes(BTLE(access_addr=0x50654A2B) / BTLE_DATA(LLID=1, len=0))
    assert decode(with_phdr(data)) is SkipReason.BLE_NOT_ADVERTISING
    advert = link_layer(BTLE_ADV_IND(AdvA=RPA, data=[FLAGS]))
    assert decode(with_phdr(advert, type=2)) is SkipReason.BLE_NOT_ADVERTISING
    assert decode(with_phdr(advert, type=1)) is SkipReason.BLE_EXTENDED_ADVERTISING
    extended = bytearray(advert)
    extended[4] = (extended[4] & 0xF0) | 0x07  # ADV_EXT_IND
    assert decode(with_phdr(bytes(extended))) is SkipReason.BLE_EXTENDED_ADVERTISING


# ---------------------------------------------------------------- every rejection reason


def _raw_advert(pdu_type: int, payload: bytes, *, length: int | None = None) -> bytes:
    header = bytes([0x40 | pdu_type, len(payload) if length is None else length])
    return struct.pack("<I", 0x8E89BED6) + header + payload + b"\x00\x00\x00"


def test_link_layer_rejections() -> None:
    address = bytes.fromhex(RPA.replace(":", ""))[::-1]
    good = with_phdr(link_layer(BTLE_ADV_IND(AdvA=RPA, data=[FLAGS])))
    assert decode(good[:PHDR_LEN - 1]) is RejectReason.BLE_PHDR_TRUNCATED
    assert decode(with_phdr(link_layer(BTLE_ADV_IND(AdvA=RPA)), crc_valid=0)) is (
        RejectReason.BLE_BAD_CRC)
    assert decode(good[: PHDR_LEN + 8]) is RejectReason.BLE_TRUNCATED
    assert decode(good[:-1]) is RejectReason.BLE_TRUNCATED
    assert decode(good + b"\x00") is RejectReason.BLE_LENGTH_MISMATCH
    assert decode(with_phdr(_raw_advert(0, address[:5]))) is RejectReason.BLE_BAD_PDU_LENGTH
    assert decode(with_phdr(_raw_advert(0, address + bytes(32)))) is (
        RejectReason.BLE_BAD_PDU_LENGTH)
    assert decode(with_phdr(_raw_advert(0x9, address))) is RejectReason.BLE_UNKNOWN_PDU_TYPE


def test_malformed_ad_structures_are_rejected() -> None:
    address = bytes.fromhex(RPA.replace(":", ""))[::-1]
    for structures in (
        b"\x02\xff\x4c",  # manufacturer data without a full company id
        b"\x02\x16\xaa",  # 16-bit service data without a full UUID
        b"\x10\x21" + bytes(15),  # 128-bit service data one byte short of its UUID
    ):
        frame = with_phdr(_raw_advert(0, address + structures))
        assert decode(frame) is RejectReason.BLE_MALFORMED_AD, structures


# ---------------------------------------------------------------- salvaged


def _structures(*elements: Any) -> bytes:
    return b"".join(bytes(element) for element in elements)


def test_a_truncated_last_ad_structure_keeps_the_address_and_is_counted() -> None:
    address = bytes.fromhex(RPA.replace(":", ""))[::-1]
    frame = with_phdr(_raw_advert(0, address + bytes(FLAGS) + b"\x05\x09ab"))  # name: 2 of 4
    outcome = decode(frame)
    assert outcome == Salvaged(Sighting(AT, IdentifierKind.BLE_ADDRESS,
                                        ble_address_identifier(RPA), True, -63.0, "ble"),
                               SalvageReason.BLE_TRUNCATED_AD)
    stats = DecodeStats()
    assert stats.record(outcome) == outcome.sighting
    assert (stats.sightings, stats.salvaged, stats.rejected) == (1, 1, 0)
    assert stats.salvages == {"ble_truncated_ad": 1}


def test_structures_before_a_truncated_one_still_name_a_beacon() -> None:
    address = bytes.fromhex(RPA.replace(":", ""))[::-1]
    beacon = uuid.UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")
    tail = _structures(FLAGS, ibeacon(beacon, 100, 7))
    frame = with_phdr(_raw_advert(0, address + tail[3:] + b"\x1e\xff\x4c"))  # cut mid-header
    outcome = decode(frame)
    assert isinstance(outcome, Salvaged)
    assert summary(outcome.sighting) == (IdentifierKind.BLE_IBEACON,
                                         ibeacon_identifier(beacon, 100, 7), False, -63.0)
    assert parse_ad_structures(b"\x05\x01\x06", 0, 3) == ({}, {}, True)


def test_the_cache_remembers_salvaged_adverts() -> None:
    address = bytes.fromhex(RPA.replace(":", ""))[::-1]
    frame = with_phdr(_raw_advert(0, address + b"\x05\x01\x06"))
    caches = IdentityCaches()
    first = decode_ble_phdr_frame(frame, AT, CONFIG, "ble", caches)
    again = decode_ble_phdr_frame(frame, AT + 1, CONFIG, "ble", caches)
    assert isinstance(first, Salvaged)
    assert isinstance(again, Salvaged)
    assert again.sighting == first.sighting._replace(at=AT + 1)
    assert first == decode(frame)
    assert len(caches.adverts) == 1


# ---------------------------------------------------------------- fuzz


@FUZZ
@given(st.binary(max_size=80))
def test_random_bytes_never_raise(frame: bytes) -> None:
    stats = DecodeStats()
    stats.record(decode(frame))
    stats.record(decode_ble_ll_frame(frame, AT, CONFIG, "ble"))
    assert stats.frames == stats.decoded + stats.rejected == 2


_VALID = [
    with_phdr(link_layer(BTLE_ADV_IND(AdvA=RPA, data=[FLAGS]))),
    with_phdr(link_layer(BTLE_ADV_NONCONN_IND(AdvA=RPA, data=[ibeacon(APP_UUID, 1, 2)]))),
    with_phdr(link_layer(BTLE_SCAN_RSP(AdvA=RPA, data=[
        EIR_Hdr() / EIR_ServiceData128BitUUID(svc_uuid=uuid.UUID(APP_SERVICE)) / b"abcd-1"]))),
]


@FUZZ
@given(
    st.sampled_from(_VALID),
    st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=6),
    st.integers(0, 50),
)
def test_mutated_valid_frames_never_raise(
    frame: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    outcome = decode(mutate(frame, flips, cut))
    assert isinstance(outcome, Sighting | Salvaged | RejectReason | SkipReason)
    if isinstance(outcome, Salvaged):
        assert outcome.reason is SalvageReason.BLE_TRUNCATED_AD
        outcome = outcome.sighting
    if isinstance(outcome, Sighting):
        assert outcome.canonical_id.split(":", 1)[0] in {"ble", "app", "ibeacon", "eddystone"}


@FUZZ
@given(
    st.sampled_from(_VALID),
    st.integers(0, 40),
    st.integers(0, 255),
)
def test_ad_lengths_running_past_the_payload_are_salvaged_or_rejected(
    frame: bytes, position: int, length: int
) -> None:
    """Overwrite any AD length octet: the advert is salvaged, rejected or decoded whole,
    never raises, and a salvaged one names the same advertiser or one of its beacons."""
    mutated = bytearray(frame)
    mutated[PHDR_LEN + 6 + 6 + min(position, len(frame) - PHDR_LEN - 6 - 6 - 4)] = length
    outcome = decode(bytes(mutated))
    assert isinstance(outcome, Sighting | Salvaged | RejectReason | SkipReason)
    stats = DecodeStats()
    stats.record(outcome)
    assert stats.frames == stats.decoded + stats.rejected == 1
    assert stats.salvaged <= stats.sightings
