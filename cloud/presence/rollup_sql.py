"""Rebuilding footfall roll-ups in PostgreSQL itself, for a backfill: a year of a store's
events never travels to Python.

The same visits as `cloud.presence.visits`, in SQL: an event starts a visit when it
starts more than `VISIT_GAP` after the latest end of the device's earlier events in the
store (a running max over a window), visits are numbered by counting those starts, and
a visit is a repeat when a stable sighting of the device precedes it by at most
`REPEAT_LOOKBACK` (a running max of stable first sightings). A zone visit belongs to the
store visit of its first event. The tests hold both paths to the same figures.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from sqlalchemy import text
from sqlmodel import Session

from cloud.presence.crud import VISIT_GAP
from cloud.presence.models import WHOLE_STORE
from cloud.presence.rollups import lock_store, stores_with_events
from cloud.presence.visits import DWELL_BUCKETS, PASSERBY_MAX_DWELL_S, READ_AHEAD, REPEAT_LOOKBACK

_VISIT_TABLE = "footfall_rebuild_visit"
#: Memory for the visits' sorts in a backfill's transaction: a year of a busy store's
#: events (half a million) sorts in memory rather than in temporary files.
BACKFILL_WORK_MEM = "256MB"
_CREATE = f"""
CREATE TEMP TABLE IF NOT EXISTS {_VISIT_TABLE} (
    zone text NOT NULL, start timestamptz NOT NULL, "end" timestamptz NOT NULL,
    stable bool NOT NULL, repeat bool NOT NULL
) ON COMMIT DROP
"""
#: Store visits (zone '') reaching into [since, until) and zone visits starting in it.
_VISITS = f"""
INSERT INTO {_VISIT_TABLE} (zone, start, "end", stable, repeat)
WITH ev AS (
    SELECT id, zone, pseudonym, scope = 'stable' AS stable, first_seen, last_seen
    FROM presence_event
    WHERE tenant = :tenant AND store = :store
      AND last_seen >= :lower AND first_seen < :read_until
), marked AS (
    SELECT ev.*,
        coalesce(first_seen > max(last_seen) OVER by_device + :gap, true) AS starts_visit,
        coalesce(first_seen > max(last_seen) OVER by_zone + :gap, true) AS starts_zone_visit,
        max(first_seen) FILTER (WHERE stable) OVER by_device AS stable_before
    FROM ev
    WINDOW by_device AS (PARTITION BY pseudonym ORDER BY first_seen, id
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
           by_zone AS (PARTITION BY zone, pseudonym ORDER BY first_seen, id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), numbered AS (
    SELECT marked.*,
        count(*) FILTER (WHERE starts_visit) OVER (
            PARTITION BY pseudonym ORDER BY first_seen, id ROWS UNBOUNDED PRECEDING) AS visit,
        count(*) FILTER (WHERE starts_zone_visit) OVER (
            PARTITION BY zone, pseudonym ORDER BY first_seen, id ROWS UNBOUNDED PRECEDING)
            AS zone_visit
    FROM marked
), store_visit AS (
    SELECT pseudonym, visit, min(first_seen) AS start, max(last_seen) AS "end",
        bool_and(stable) AS stable,
        bool_and(stable) AND coalesce(
            max(stable_before) FILTER (WHERE starts_visit) >= min(first_seen) - :lookback,
            false) AS repeat
    FROM numbered GROUP BY pseudonym, visit
), zone_visit AS (
    SELECT zone, pseudonym, min(visit) AS visit, min(first_seen) AS start,
        max(last_seen) AS "end", bool_and(stable) AS stable
    FROM numbered GROUP BY zone, pseudonym, zone_visit
)
SELECT :whole, start, "end", stable, repeat FROM store_visit
WHERE start < :until AND "end" >= :since
UNION ALL
SELECT z.zone, z.start, z."end", z.stable, z.stable AND s.repeat
FROM zone_visit z JOIN store_visit s USING (pseudonym, visit)
WHERE z.start >= :since AND z.start < :until
"""
_REACH = f"""
SELECT max("end") FILTER (WHERE start < :until), min(start) FILTER (WHERE start < :since)
FROM {_VISIT_TABLE} WHERE zone = :whole
"""


def _bucket_filters() -> str:
    """A count per dwell bucket, of visitors only."""
    columns = ("dwell_under_1m", "dwell_1_5m", "dwell_5_15m", "dwell_15_30m",
               "dwell_30_60m", "dwell_over_60m")
    filters, lower = [], 0.0
    for (_, upper), _column in zip(DWELL_BUCKETS, columns, strict=True):
        above = f"dwell_s >= {max(lower, PASSERBY_MAX_DWELL_S)}"
        below = f" AND dwell_s < {upper}" if upper is not None else ""
        filters.append(f"count(*) FILTER (WHERE {above}{below})")
        lower = upper or lower
    return ", ".join(filters)


_COUNTS = (
    "count(*), count(*) FILTER (WHERE dwell_s >= :passerby), "
    "count(*) FILTER (WHERE dwell_s < :passerby), "
    "count(*) FILTER (WHERE dwell_s >= :passerby AND stable AND NOT repeat), "
    "count(*) FILTER (WHERE dwell_s >= :passerby AND stable AND repeat), "
    "count(*) FILTER (WHERE dwell_s >= :passerby AND NOT stable), " + _bucket_filters()
)
_COUNT_COLUMNS = (
    "devices, visitors, passers_by, new_visitors, repeat_visitors, unknown_visitors, "
    "dwell_under_1m, dwell_1_5m, dwell_5_15m, dwell_15_30m, dwell_30_60m, dwell_over_60m"
)
_COUNTED = f"""
(SELECT zone, start, stable, repeat,
        extract(epoch FROM "end" - start)::float8 AS dwell_s
 FROM {_VISIT_TABLE} WHERE start >= :since) AS visit
"""
_HOURS = f"""
INSERT INTO footfall_hour (tenant, store, zone, hour, {_COUNT_COLUMNS})
SELECT :tenant, :store, zone, date_trunc('hour', start, 'UTC'), {_COUNTS}
FROM {_COUNTED} GROUP BY zone, date_trunc('hour', start, 'UTC')
"""
_DAYS = f"""
INSERT INTO footfall_day (tenant, store, zone, day, {_COUNT_COLUMNS}, median_dwell_s)
SELECT :tenant, :store, zone, (start AT TIME ZONE 'UTC')::date, {_COUNTS},
    round((percentile_cont(0.5) WITHIN GROUP (ORDER BY dwell_s)
           FILTER (WHERE dwell_s >= :passerby))::numeric, 3)::float8
FROM {_COUNTED} GROUP BY zone, (start AT TIME ZONE 'UTC')::date
"""


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def rebuild_store_sql(session: Session, *, tenant: str, store: str, since: date,
                      until: date) -> None:
    """Replace a store's roll-ups of the days [since, until) (PostgreSQL)."""
    start, end = _day_start(since), _day_start(until)
    connection = session.connection()
    connection.execute(text(f"SET LOCAL work_mem = '{BACKFILL_WORK_MEM}'"))
    connection.execute(text(_CREATE))
    lower, read_until = start - REPEAT_LOOKBACK, end + VISIT_GAP + READ_AHEAD
    params = {"tenant": tenant, "store": store, "since": start, "until": end,
              "gap": VISIT_GAP, "lookback": REPEAT_LOOKBACK, "whole": WHOLE_STORE,
              "passerby": PASSERBY_MAX_DWELL_S}
    while True:
        connection.execute(text(f"TRUNCATE {_VISIT_TABLE}"))
        connection.execute(text(_VISITS), {**params, "lower": lower - VISIT_GAP,
                                           "read_until": read_until})
        reach, back = connection.execute(text(_REACH), params).one()
        if reach is not None and reach >= read_until - VISIT_GAP:
            read_until = reach + VISIT_GAP + READ_AHEAD
        elif back is not None and back < lower:
            lower = back
        else:
            break
    for table, column, low, high in (("footfall_hour", "hour", start, end),
                                     ("footfall_day", "day", since, until)):
        connection.execute(
            text(f"DELETE FROM {table} WHERE tenant = :tenant AND store = :store "
                 f"AND {column} >= :low AND {column} < :high"),
            {"tenant": tenant, "store": store, "low": low, "high": high},
        )
    connection.execute(text(_HOURS), params)
    connection.execute(text(_DAYS), params)


def rebuild_sql(session: Session, *, tenant: str, since: date, until: date,
                commit_each_store: bool = True) -> int:
    """Rebuild a tenant's days [since, until) store by store (a transaction each when
    `commit_each_store`: a backfill of a hundred stores keeps no lock for its whole run);
    returns the store days rebuilt."""
    stores = stores_with_events(session, tenant=tenant, since=_day_start(since),
                                until=_day_start(until))
    for store in stores:
        lock_store(session, tenant=tenant, store=store)
        rebuild_store_sql(session, tenant=tenant, store=store, since=since, until=until)
        if commit_each_store:
            session.commit()
    return len(stores) * (until - since).days

