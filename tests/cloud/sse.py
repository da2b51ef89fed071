"""Reading server-sent events as a client does: fields gathered until a blank line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class Sse:
    name: str
    data: Any
    id: str | None
    retry: int | None


def sse_events(lines: Iterable[str]) -> Iterator[Sse]:
    """The events of a stream's lines (comments, such as pings, skipped); `data` parsed
    as JSON."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields or "event" in fields:
                yield Sse(name=fields.get("event", "message"), data=json.loads(fields["data"]),
                          id=fields.get("id"),
                          retry=int(fields["retry"]) if "retry" in fields else None)
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
