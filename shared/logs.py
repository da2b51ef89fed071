"""One log format for every Vitrina process: a JSON object per line (or plain text at a
terminal), through the standard library so the gateway needs nothing more.

Neither the gateway nor the orchestrator logs an identifier, raw or pseudonymous. As a
second line of defence a filter masks anything in a log record that looks like a MAC
address, a UUID (beacon ids) or an app install id, so a careless message in a library
or a future change cannot leak one into the journal.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

#: Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)

_SENSITIVE = re.compile(
    r"(?i)\b[0-9a-f]{2}(?:[:-][0-9a-f]{2}){5}\b"  # MAC addresses
    r"|\b[0-9a-f]{12}\b"  # bare 48-bit addresses
    r"|\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"  # UUIDs
    r"|\b(?:app|ble|wifi|ibeacon|eddystone):[^\s\"',]+"  # canonical identifiers
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    return _SENSITIVE.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Masks identifier-like text in the message, its arguments and its extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, name, redact(value))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRS:
                document[name] = value
        if record.exc_text:
            document["exc"] = record.exc_text
        return json.dumps(document, default=str)


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def configure_logging(
    *, level: LogLevel, json_lines: bool, stream: TextIO | None = None
) -> logging.Handler:
    """Route every logger to one handler on stderr (the journal, under systemd)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
