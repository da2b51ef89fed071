"""Prometheus metrics of the orchestrator, on a registry of its own.

A private registry (rather than the library's global one) keeps /metrics to what
this process does, and lets a test read a counter without interference from imports.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

INGEST_MESSAGES = Counter(
    "vitrina_ingest_messages",
    "MQTT messages handled by the worker, by channel and outcome",
    ["channel", "outcome"],
    registry=REGISTRY,
)
INGEST_EVENTS = Counter(
    "vitrina_ingest_events",
    "Presence events handled: new (stored) or duplicate (already stored, skipped)",
    ["outcome"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "vitrina_dead_letters",
    "Messages that could not be used and were kept as dead letters",
    ["channel"],
    registry=REGISTRY,
)
INGEST_BATCH_SECONDS = Histogram(
    "vitrina_ingest_batch_seconds",
    "Time to decode and commit one batch of messages",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
INGEST_BATCH_MESSAGES = Histogram(
    "vitrina_ingest_batch_messages",
    "Messages written per database transaction (each holds up to 500 events)",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
    registry=REGISTRY,
)
INGEST_LAG_SECONDS = Histogram(
    "vitrina_ingest_lag_seconds",
    "From a presence batch leaving its gateway (its sent_at) to its commit here: how far "
    "behind the workers run (gateway clock skew shows up here too)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600),
    registry=REGISTRY,
)
DATABASE_RETRIES = Counter(
    "vitrina_database_retries",
    "Batches retried because the database was unreachable",
    registry=REGISTRY,
)
BROKER_CONNECTED = Gauge(
    "vitrina_broker_connected", "1 while the worker is connected to the broker",
    registry=REGISTRY,
)
MESSAGES_SENT = Counter(
    "vitrina_messages",
    "Messages handed to a delivery channel, by outcome",
    ["channel", "outcome"],
    registry=REGISTRY,
)


WEBHOOKS = Counter(
    "vitrina_webhooks",
    "Commerce webhooks received, by outcome (stored; ignored: stored but changing nothing, "
    "such as an order re-sent under a new event id; duplicate; invalid; unauthorized)",
    ["outcome"],
    registry=REGISTRY,
)
OUTBOUND_WEBHOOKS = Counter(
    "vitrina_outbound_webhooks",
    "Webhooks to the shop from scenario steps, by outcome: queued (by a step), then per "
    "attempt sent, retry (408, 429, 5xx, no answer) or failed (other 4xx, or given up)",
    ["outcome"],
    registry=REGISTRY,
)
OUTBOUND_REFUSALS = Counter(
    "vitrina_outbound_refusals",
    "URLs refused by the outbound rules (cloud.outbound), by client (webhook, web_push), "
    "stage (save: the API refused it; send: a request was not made) and rule (syntax, "
    "scheme, credentials, local_name, address)",
    ["client", "stage", "rule"],
    registry=REGISTRY,
)
API_AUTH_REFUSALS = Counter(
    "vitrina_api_auth_refusals",
    "API requests refused: missing, malformed, unknown, mismatch (wrong secret), revoked "
    "(all 401) or forbidden (valid key, wrong tenant or role: 403)",
    ["reason"],
    registry=REGISTRY,
)
LOCATION_REPORTS_REFUSED = Counter(
    "vitrina_location_reports_refused",
    "Location reports refused because the customer's latest location_marketing answer is "
    "not a yes, by reason (location_consent_missing, location_consent_withdrawn)",
    ["reason"],
    registry=REGISTRY,
)
STORE_BEACON_REPORTS_REFUSED = Counter(
    "vitrina_store_beacon_reports_refused",
    "Store-beacon reports refused, by reason (beacon_not_current: an id of no store's "
    "current or previous period, e.g. one recorded earlier and replayed; "
    "location_consent_missing, location_consent_withdrawn)",
    ["reason"],
    registry=REGISTRY,
)
PRESENCE_ENTERS_JOINED = Counter(
    "vitrina_presence_enters_joined",
    "Enters that joined a visit the other source had already opened (no second "
    "presence.enter), by the joining source (gateway, store_beacon)",
    ["source"],
    registry=REGISTRY,
)
PRESENCE_TRIGGERS_WITHHELD = Counter(
    "vitrina_presence_triggers_withheld",
    "Store visits of customers without a yes to location-based marketing, not turned "
    "into scenario triggers",
    registry=REGISTRY,
)
PURGED_PSEUDONYMS = Counter(
    "vitrina_presence_pseudonyms_purged",
    "Stored presence events whose stable pseudonym was replaced (retention or erasure)",
    registry=REGISTRY,
)
GATEWAY_CONFIG_PUBLISHES = Counter(
    "vitrina_gateway_config_publishes",
    "Gateway configs put on the broker, retained, by reason (saved: by the save itself; "
    "unpublished: by the worker, the broker away at the save; unacknowledged: again, the "
    "gateway not reporting it) and outcome (published or failed)",
    ["reason", "outcome"],
    registry=REGISTRY,
)
FOOTFALL_ROLLUP_LAG_SECONDS = Gauge(
    "vitrina_footfall_rollup_lag_seconds",
    "Age of the oldest hour waiting for its footfall roll-ups to be rebuilt (0: current), "
    "as the last roll-up step left it",
    registry=REGISTRY,
)
FOOTFALL_ROLLUP_HOURS = Counter(
    "vitrina_footfall_rollup_hours",
    "Marked hours whose footfall roll-ups the worker rebuilt",
    registry=REGISTRY,
)


def render() -> bytes:
    return generate_latest(REGISTRY)

SCENARIO_TRIGGERS = Counter(
    "vitrina_scenario_triggers",
    "Triggers the scenario engine read, by outcome (handled, unmatched, failed)",
    ["outcome"],
    registry=REGISTRY,
)
SCENARIO_STEPS = Counter(
    "vitrina_scenario_steps",
    "Journey steps run, by step type",
    ["type"],
    registry=REGISTRY,
)
