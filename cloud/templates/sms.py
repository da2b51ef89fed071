"""Exact SMS segment counting (3GPP TS 23.038 alphabets, TS 23.040 concatenation).

A text is sent in the GSM 7-bit default alphabet when every character is in its basic
table or its extension table (an extension character costs two septets: an escape and
the character); otherwise the whole text goes as UCS-2, counted in UTF-16 code units
(what providers send, so a character outside the Basic Multilingual Plane costs two).
One segment holds 160 septets or 70 units; a longer text is split into segments of 153
septets or 67 units, the rest of each being the concatenation header. Providers never
split an escape sequence or a surrogate pair across two segments, so a character that
does not fit whole starts the next segment. National language shift tables are not
used: handsets' support for them is patchy, so senders do not rely on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

#: The 127 printable characters of the GSM 03.38 basic table (the 128th code is the
#: escape to the extension table). Ç is the standard's character at 0x09, not ç.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The extension table: each costs an escape septet plus its own.
GSM7_EXTENDED = frozenset("\f^{}\\[~]|€")

#: A single-segment message: 140 octets of user data hold 160 septets or 70 UCS-2 units.
GSM7_SINGLE = 160
UCS2_SINGLE = 70
#: Concatenated segments lose 6 octets to the user data header: 153 septets, 67 units.
GSM7_MULTI = 153
UCS2_MULTI = 67


class SmsEncoding(StrEnum):
    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@dataclass(frozen=True, slots=True)
class SmsCount:
    """How a text travels: its encoding, its length in that encoding's units (septets
    for GSM-7, UTF-16 code units for UCS-2) and the segments it is billed as."""

    encoding: SmsEncoding
    units: int
    segments: int
    #: The characters that forced UCS-2, in order of first appearance (empty for GSM-7).
    non_gsm: tuple[str, ...] = ()

    @property
    def unit_name(self) -> str:
        return "septets" if self.encoding is SmsEncoding.GSM7 else "code units"


def is_gsm7(text: str) -> bool:
    """Whether the text can be sent in the GSM 7-bit alphabet."""
    return all(char in GSM7_BASIC or char in GSM7_EXTENDED for char in text)


def non_gsm_characters(text: str) -> tuple[str, ...]:
    """The distinct characters outside GSM-7, in order of first appearance."""
    return tuple(
        dict.fromkeys(c for c in text if c not in GSM7_BASIC and c not in GSM7_EXTENDED)
    )


def gsm7_septets(text: str) -> int | None:
    """Septets the text needs in GSM-7, or None when it cannot be sent in GSM-7."""
    total = 0
    for char in text:
        if char in GSM7_BASIC:
            total += 1
        elif char in GSM7_EXTENDED:
            total += 2
        else:
            return None
    return total


def ucs2_units(text: str) -> int:
    """UTF-16 code units: two for a character outside the Basic Multilingual Plane."""
    return sum(2 if ord(char) > 0xFFFF else 1 for char in text)


def _segments(costs: Iterable[int], single: int, multi: int) -> tuple[int, int]:
    """(units, segments) for characters of the given unit costs, never splitting one."""
    costs = list(costs)
    units = sum(costs)
    if units <= single:
        return units, 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            segments += 1
            used = 0
        used += cost
    return units, segments


def _gsm7_cost(char: str) -> int:
    return 2 if char in GSM7_EXTENDED else 1


def _ucs2_cost(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def count_ucs2(text: str) -> SmsCount:
    """The text counted as UCS-2 whatever it holds (a worst case for a text whose other
    renderings may need UCS-2)."""
    units, segments = _segments(map(_ucs2_cost, text), UCS2_SINGLE, UCS2_MULTI)
    return SmsCount(SmsEncoding.UCS2, units, segments, non_gsm_characters(text))


def count_sms(text: str) -> SmsCount:
    """How the text is sent: GSM-7 when it can be, UCS-2 otherwise.

    An empty text still occupies one segment, as it would on the air.
    """
    if is_gsm7(text):
        units, segments = _segments(map(_gsm7_cost, text), GSM7_SINGLE, GSM7_MULTI)
        return SmsCount(SmsEncoding.GSM7, units, segments)
    return count_ucs2(text)
