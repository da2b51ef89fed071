"""One-time enrolment codes: `XXXX-XXXX`, typed by hand on a gateway.

The alphabet leaves out what people misread or mistype (0/O, 1/I/L, 5/S, 2/Z, 8/B):
25 symbols, so 8 of them are about 37 bits. That is far beyond guessing within a code's
lifetime at the rate `POST /enrol` lets one client address try. Only the SHA-256 of a
code is stored: the database is no list of usable codes.
"""

from __future__ import annotations

import hashlib
import re
import secrets

CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
#: Symbols per code, shown as two groups of four.
CODE_LENGTH = 8
_GROUP = CODE_LENGTH // 2
#: Spaces and dashes people type between the groups, and lower case, are forgiven.
_SEPARATORS = re.compile(r"[\s-]+")


def new_code() -> str:
    """A fresh code, e.g. `K7QX-3FHM`."""
    symbols = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{symbols[:_GROUP]}-{symbols[_GROUP:]}"


def canonical_code(typed: str) -> str | None:
    """The code as stored (upper case, no separator), or None when it cannot be one."""
    symbols = _SEPARATORS.sub("", typed).upper()
    if len(symbols) != CODE_LENGTH or any(symbol not in CODE_ALPHABET for symbol in symbols):
        return None
    return symbols


def code_hash(canonical: str) -> str:
    return hashlib.sha256(f"enrolment:{canonical}".encode()).hexdigest()
