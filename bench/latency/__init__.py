"""The presence-to-push latency bench (`python -m bench.bench_presence_to_push`), by part:

- `shoppers`: the consenting customers each event is for, and seeding them in bulk;
- `services`: the processes a run starts: the local FCM server, and the orchestrator's
  workers with their settings;
- `gateways`: the stores' gateways (the edge's own outbox and publisher) and the feeder
  that hands them events on schedule;
- `probes`: what arrives: the MQTT and FCM baselines, the FCM server's record of pushes,
  and the database sampled for each stage's progress;
- `figures`: latency spreads, the stages' timestamps and throughputs, and a run's results;
- `report`: the page the bench writes;
- `runner`: one phase from scratch, from the broker to the figures.

What several parts share is here.
"""

from __future__ import annotations

TARGET_P99_MS = 250.0
TARGET_RATE = 500
TENANT = "bench"
KEY_ID = "k1"
KEY_SECRET = "6b" * 32
PROJECT = "vitrina-latency"
#: Shoppers arrive at several stores at once: one gateway (outbox, publisher, MQTT
#: connection) per store, events dealt to them in turn.
STORES = 4
#: How often the feeder hands due events to the gateways. The agent flushes to its
#: outbox once per loop turn with whatever its sources produced, so events reach the
#: outbox a few at a time; each event's clock starts at its own hand-off.
TICK_S = 0.01
#: The FCM baseline's pace: enough samples for a p99, too few to load anything.
FCM_PROBE_INTERVAL_S = 0.05
#: Start-up bound for the worker (subscribed) and the FCM server.
STARTUP_TIMEOUT_S = 60.0
#: How often the database is asked how far each stage got: fine enough to see a backlog
#: build, coarse enough to cost the database next to nothing.
SAMPLE_INTERVAL_S = 0.25
