from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from shared.logs import REDACTED, configure_logging, redact


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure_logging(level="DEBUG", json_lines=True, stream=buffer)
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_extras(stream: io.StringIO) -> None:
    logging.getLogger("vitrina.test").info("outbox full", extra={"dropped": 3, "max_events": 10})
    (record,) = lines(stream)
    assert record["msg"] == "outbox full"
    assert record["level"] == "INFO"
    assert record["logger"] == "vitrina.test"
    assert (record["dropped"], record["max_events"]) == (3, 10)
    assert str(record["ts"]).endswith("+00:00")


@pytest.mark.parametrize(
    "leak",
    [
        "3c:5a:b4:01:02:03",
        "3C-5A-B4-01-02-03",
        "3c5ab4010203",
        "9d8616a8-4f20-4006-be4f-9bc6656b19a9",
        "app:juan-app-0001",
        "wifi:02:11:22:33:44:55",
        "eddystone:76697472696e61000001:0000000000aa",
    ],
)
def test_identifiers_are_masked_wherever_they_hide(stream: io.StringIO, leak: str) -> None:
    logger = logging.getLogger("vitrina.test")
    logger.warning("saw %s", leak, extra={"detail": f"device {leak}"})
    try:
        raise ValueError(f"bad frame from {leak}")
    except ValueError:
        logger.exception("decoder failed")
    text = stream.getvalue()
    assert leak.lower() not in text.lower()
    assert text.count(REDACTED) >= 3


def test_pseudonyms_and_event_ids_are_not_masked() -> None:
    pseudonym = "k1:" + "ab" * 16
    event_id = "0123456789abcdef" * 2
    assert redact(f"{pseudonym} {event_id}") == f"{pseudonym} {event_id}"


def test_text_format_for_a_terminal() -> None:
    buffer = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        configure_logging(level="WARNING", json_lines=False, stream=buffer)
        logging.getLogger("vitrina.test").info("hidden")
        logging.getLogger("vitrina.test").warning("shown for 3c:5a:b4:01:02:03")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
    text = buffer.getvalue()
    assert "hidden" not in text
    assert "WARNING vitrina.test shown for [redacted]" in text
