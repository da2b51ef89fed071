"""The one error templates raise: what an admin sees when a template cannot be saved, and
what a send sees in the (defensive) case that one cannot be rendered.

It is a ValueError so that API code mapping ValueErrors to 422 answers needs no special
case; `part`, `line` and `field` let an admin screen point at the offending spot.
"""

from __future__ import annotations


class TemplateError(ValueError):
    """A template part that cannot be saved or rendered, with where and why."""

    def __init__(
        self,
        reason: str,
        *,
        part: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        where = f"{part}: " if part else ""
        if line is not None:
            where += f"line {line}: "
        super().__init__(where + reason)
        self.reason = reason
        self.part = part
        self.line = line
        self.field = field
