"""Coupon codes: short enough to type at a till, long enough not to be guessed.

A code is "<PREFIX>-<RANDOM>": the prefix comes from the offer's key so staff and
customers can tell offers apart ("DRYER20-7QXK3M9TPA"), the random part is drawn with
`secrets` from an alphabet without look-alikes (no I, L, O, U), so a code read aloud or
copied from a picture is still right. Codes fit the templates' `coupon.code` field
(A-Z, 0-9 and "-", at most 20 characters).
"""

from __future__ import annotations

import re
import secrets

#: The characters of the random part: Crockford's base 32 (digits and letters without
#: I, L, O and U), 5 bits each.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: 10 characters = 50 bits: guessing one of a million live codes still takes about a
#: billion tries, and a guessed code is useless anyway without the customer's account.
RANDOM_LENGTH = 10
#: Long enough to recognise the offer, short enough to leave room for the random part.
PREFIX_MAX = 8
#: The templates' limit on `coupon.code` (cloud.templates.context.COUPON_CODE_MAX).
CODE_MAX = 20
#: The prefix used when an offer key has no letter or digit to take one from.
FALLBACK_PREFIX = "CPN"
CODE_RE = re.compile(r"[A-Z0-9]+(?:-[A-Z0-9]+)*")

assert PREFIX_MAX + 1 + RANDOM_LENGTH <= CODE_MAX


def code_prefix(offer_key: str) -> str:
    """The offer key's letters and digits, upper-cased, cut to `PREFIX_MAX`."""
    kept = "".join(char for char in offer_key.upper() if "A" <= char <= "Z" or "0" <= char <= "9")
    return kept[:PREFIX_MAX] or FALLBACK_PREFIX


def new_code(offer_key: str) -> str:
    """A fresh random code for an offer; uniqueness is the database's to enforce."""
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return f"{code_prefix(offer_key)}-{random_part}"


def normalize_code(text: str) -> str:
    """What a shop sends as the customer typed it, in the stored form: surrounding spaces
    dropped, upper case."""
    return text.strip().upper()


def is_code(text: str) -> bool:
    """Whether `text` (normalised) can be a code of ours at all: anything else is not looked
    up in the database."""
    return len(text) <= CODE_MAX and CODE_RE.fullmatch(text) is not None
