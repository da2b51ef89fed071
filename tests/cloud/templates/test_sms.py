"""Segment counting against worked examples of the GSM 03.38 and concatenation rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.templates.sms import (
    GSM7_BASIC,
    GSM7_EXTENDED,
    SmsCount,
    SmsEncoding,
    count_sms,
    count_ucs2,
    gsm7_septets,
    is_gsm7,
    non_gsm_characters,
    ucs2_units,
)

GSM = SmsEncoding.GSM7
UCS2 = SmsEncoding.UCS2


def test_tables_have_the_standard_sizes() -> None:
    assert len(GSM7_BASIC) == 127  # 128 codes, one of them the escape
    assert len(GSM7_EXTENDED) == 10
    assert not GSM7_BASIC & GSM7_EXTENDED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SmsCount(GSM, 0, 1)),
        ("a" * 160, SmsCount(GSM, 160, 1)),
        ("a" * 161, SmsCount(GSM, 161, 2)),
        ("a" * 306, SmsCount(GSM, 306, 2)),
        ("a" * 307, SmsCount(GSM, 307, 3)),
        # The euro sign is in the extension table: escape + code, two septets.
        ("a" * 158 + "€", SmsCount(GSM, 160, 1)),
        ("a" * 159 + "€", SmsCount(GSM, 161, 2)),
        ("a" * 159 + "{", SmsCount(GSM, 161, 2)),
        ("{}[]~|^\\€\f", SmsCount(GSM, 20, 1)),
        # 152 septets then an escape pair: the pair may not straddle, so segment one
        # closes at 152 and the second holds the pair plus 152 more (154 > 153: a third).
        ("a" * 152 + "€" + "a" * 152, SmsCount(GSM, 306, 3)),
        ("a" * 152 + "€" + "a" * 151, SmsCount(GSM, 305, 2)),
        # Accented letters that GSM-7 has cost one septet.
        ("¿Qué tal, Ñoño? ¡Güey! àèìòù ÄÖÜß", SmsCount(GSM, 33, 1)),
        # Letters it lacks force UCS-2 for the whole text.
        ("cupón", SmsCount(UCS2, 5, 1, ("ó",))),
        ("Ж" * 70, SmsCount(UCS2, 70, 1, ("Ж",))),
        ("Ж" * 71, SmsCount(UCS2, 71, 2, ("Ж",))),
        ("Ж" * 134, SmsCount(UCS2, 134, 2, ("Ж",))),
        ("Ж" * 135, SmsCount(UCS2, 135, 3, ("Ж",))),
        # An emoji is a surrogate pair: two units, never split between segments.
        ("😀" * 35, SmsCount(UCS2, 70, 1, ("😀",))),
        ("😀" * 36, SmsCount(UCS2, 72, 2, ("😀",))),  # 33 + 3 pairs
        ("a" * 66 + "😀" + "a" * 66, SmsCount(UCS2, 134, 3, ("😀",))),
        ("a" * 65 + "😀" + "a" * 67, SmsCount(UCS2, 134, 2, ("😀",))),
        ("Hi 😀 ça", SmsCount(UCS2, 8, 1, ("😀", "ç"))),
        # No-break spaces are not GSM-7 (why SMS formatting uses plain spaces).
        ("15\u00a0%", SmsCount(UCS2, 4, 1, ("\u00a0",))),
        ("backtick `", SmsCount(UCS2, 10, 1, ("`",))),
    ],
)
def test_known_examples(text: str, expected: SmsCount) -> None:
    assert count_sms(text) == expected


def test_ucs2_forced_count_of_a_gsm_text() -> None:
    assert count_ucs2("a" * 71) == SmsCount(UCS2, 71, 2, ())


def test_helpers() -> None:
    assert gsm7_septets("a€") == 3
    assert gsm7_septets("añ`") is None
    assert ucs2_units("a😀") == 3
    assert is_gsm7("Ç")
    assert not is_gsm7("ç")
    assert non_gsm_characters("ççéó😀ó") == ("ç", "ó", "😀")
    assert count_sms("x").unit_name == "septets"
    assert count_sms("ó").unit_name == "code units"


@given(st.text(max_size=800))
def test_segments_hold_the_text(text: str) -> None:
    """Every count is consistent: units add up, and the segments could carry them."""
    count = count_sms(text)
    if count.encoding is GSM:
        assert count.units == gsm7_septets(text)
        single, multi = 160, 153
    else:
        assert count.units == ucs2_units(text)
        assert count.non_gsm
        assert all(c in text for c in count.non_gsm)
        single, multi = 70, 67
    if count.units <= single:
        assert count.segments == 1
    else:
        # Whole characters only: each segment loses at most one unit to a pair.
        assert -(-count.units // multi) <= count.segments <= -(-count.units // (multi - 1))


@given(st.text(max_size=400), st.text(max_size=400))
def test_appending_never_saves_segments(head: str, tail: str) -> None:
    """Monotone even across a switch to UCS-2: a GSM-7 segment always holds at least 76
    characters (153 septets at two each), a UCS-2 one at most 70."""
    assert count_sms(head + tail).segments >= count_sms(head).segments
