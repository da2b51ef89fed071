"""Presence batch decoding in `shared`: what every orchestrator worker pays per event.

Decodes full batches (500 events) with `decode_presence_batch` and compares the cost
per event with a bare `json.loads` of the same bytes, run interleaved in the same
process (the machine is shared and noisy: the ratio is the figure that travels).

    .venv/bin/python -m bench.bench_presence_decode [--batches N] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta

from shared.identifiers import IdentifierKind, wifi_identifier
from shared.presence import (
    MAX_BATCH_EVENTS,
    PresenceBatch,
    PresenceEvent,
    PseudonymScope,
    Transition,
    decode_presence_batch,
    encode_presence_batch,
    make_event_id,
)
from shared.pseudonym import Pseudonymizer, TenantKey

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def sample_payload() -> bytes:
    pseudonymizer = Pseudonymizer(TenantKey.from_text("k1", "11" * 32))
    events = []
    for index in range(MAX_BATCH_EVENTS):
        pseudonym = pseudonymizer.stable(
            wifi_identifier(f"00:1a:11:00:{index // 256:02x}:{index % 256:02x}")
        )
        events.append(
            PresenceEvent(
                event_id=make_event_id(
                    tenant="acme",
                    store="store-1",
                    gateway="gw-1",
                    pseudonym=pseudonym,
                    transition=Transition.ENTER,
                    first_seen=START,
                    sequence=index,
                ),
                tenant="acme",
                store="store-1",
                gateway="gw-1",
                pseudonym=pseudonym,
                key_id="k1",
                scope=PseudonymScope.STABLE,
                kind=IdentifierKind.WIFI_PROBE,
                randomized=False,
                transition=Transition.ENTER,
                zone="entrance",
                rssi=-61.5,
                first_seen=START,
                last_seen=START + timedelta(seconds=4),
                dwell_s=4.0,
                sightings=3,
            )
        )
    batch = PresenceBatch(
        tenant="acme", store="store-1", gateway="gw-1", sent_at=START, events=events
    )
    return encode_presence_batch(batch)


def per_event_us(work: object, payload: bytes, batches: int) -> float:
    started = time.perf_counter()
    for _ in range(batches):
        work(payload)  # type: ignore[operator]
    return (time.perf_counter() - started) / (batches * MAX_BATCH_EVENTS) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    payload = sample_payload()
    assert len(decode_presence_batch(payload).events) == MAX_BATCH_EVENTS
    baseline, decode = [], []
    for _ in range(arguments.rounds):
        baseline.append(per_event_us(json.loads, payload, arguments.batches))
        decode.append(per_event_us(decode_presence_batch, payload, arguments.batches))
    best_baseline, best_decode = min(baseline), min(decode)
    print(f"json.loads (baseline):  {best_baseline:6.2f} us/event")
    print(
        f"decode_presence_batch: {best_decode:6.2f} us/event "
        f"({1e6 / best_decode:,.0f} events/s, {best_decode / best_baseline:.1f}x the baseline)"
    )


if __name__ == "__main__":
    main()
