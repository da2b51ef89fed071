"""Reading probe requests for occupancy: the capability class, the frame's fields, and
that no input bytes make either raise."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.capture.dot11 import probe_request_parts
from edge.occupancy.probes import CLASS_CACHE_LIMIT, ProbeReader, capability_class
from tests.edge.capture.support import mutate
from tests.edge.occupancy.support import MODEL_A, MODEL_B, T0, address, probe

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_what_varies_between_a_phones_probes_leaves_the_class_alone() -> None:
    wildcard = capability_class(b"\x00\x00" + MODEL_A + b"\x03\x01\x01")
    directed = capability_class(b"\x00\x04abcd" + MODEL_A + b"\x03\x01\x0b"
                                + b"\xff\x03\x02\x00\x46" + b"\xdd\x04\x00\x17\xf2\x0a")
    assert wildcard == directed
    assert capability_class(MODEL_A) != capability_class(MODEL_B)


def test_a_truncated_last_element_ends_the_walk() -> None:
    assert capability_class(MODEL_A + b"\x01\x08\x82") == capability_class(MODEL_A)
    assert capability_class(b"") == capability_class(b"\x00")  # nothing readable either way


def test_the_reader_takes_time_address_sequence_class_and_rssi() -> None:
    reader = ProbeReader()
    first = reader.read(T0, probe(address(1), 4094, rssi=-48), -48.0)
    again = reader.read(T0 + 1, probe(address(1), 4095, ssid=b"shop", fcs=True), -50.0)
    other = reader.read(T0 + 2, probe(address(2), 7, model=MODEL_B), None)
    assert first is not None
    assert again is not None
    assert other is not None
    assert (first.at, first.sequence, first.rssi) == (T0, 4094, -48.0)
    assert first.address == again.address != other.address
    assert first.klass == again.klass != other.klass
    assert isinstance(first.address, int)  # the raw address is not kept


def test_frames_that_are_no_probe_requests_are_counted_not_read() -> None:
    reader = ProbeReader()
    beacon = bytearray(probe(address(1)))
    beacon[10] = 0x80
    assert reader.read(T0, bytes(beacon), None) is None
    assert reader.read(T0, b"\x00" * 12, None) is None
    assert reader.rejected == 2


def test_the_class_cache_is_bounded_and_forgotten() -> None:
    reader = ProbeReader()
    for index in range(CLASS_CACHE_LIMIT + 5):
        reader.read(T0, probe(address(1), ssid=index.to_bytes(3, "big")), None)
    assert len(reader._classes) <= CLASS_CACHE_LIMIT
    reader.forget()
    assert reader._classes == {}


@FUZZ
@given(st.binary(max_size=300))
def test_any_elements_give_a_class(elements: bytes) -> None:
    assert isinstance(capability_class(elements), int)


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_are_a_probe_or_none(frame: bytes) -> None:
    parts = probe_request_parts(frame)
    assert parts is None or len(parts.transmitter) == 6
    ProbeReader().read(T0, frame, None)


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=8),
    st.integers(0, 60),
)
def test_damaged_probe_requests_are_read_or_refused(flips: list[tuple[int, int]], cut: int) -> None:
    frame = mutate(probe(address(3), 17, ssid=b"cafe", fcs=True), flips, cut)
    found = ProbeReader().read(T0, frame, -70.0)
    assert found is None or 0 <= found.sequence < 4096
