"""'Did you mean' for names a person typed: the nearest valid one, when one is near.

Scenario definitions, templates and API bodies are written by hand; a misspelt entry
point or field is the most common mistake, and the fix is almost always the closest
valid name, so every refusal of an unknown name offers it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: How alike (difflib's ratio) a valid name must be to be offered: 0.6 catches a dropped,
#: doubled or swapped letter in names of 4+ characters without offering unrelated ones.
CLOSENESS = 0.6


def nearest(word: str, choices: Iterable[str]) -> str | None:
    """The valid name closest to `word`, or None when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=CLOSENESS)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' to append to a refusal, or '' when nothing is close."""
    found = nearest(word, choices)
    return f" (did you mean {found!r}?)" if found is not None else ""
