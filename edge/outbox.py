"""The durable outbox: every presence event is written here before anything else happens
to it, and removed only once the broker has acknowledged the message that carried it.

SQLite in WAL mode: a committed event survives a broker outage, a crash or `kill -9` of
the agent (and, with `synchronous = "full"`, a power cut). Events leave in insertion
order, so the events of one device are always published in the order they happened.

The outbox is bounded. When it is full, the oldest events with a daily pseudonym
(randomized addresses: footfall only) are dropped first, because they are the least
valuable and the first to become meaningless; then the oldest of the rest. Every drop
is counted, persistently, so the status heartbeat can report it.

Claims are in memory: `claim()` hands out the oldest rows not yet handed out, and a
restart hands everything out again. A message that reached the broker just before a
crash is therefore published twice; event ids are deterministic, so that is harmless.

Occupancy reports (one per minute, counts only) wait in a table of their own, one message
each, with the same claim / acknowledge cycle; a report published twice overwrites
itself in the cloud (it is stored by gateway, zone and minute). They are bounded too
(`MAX_REPORTS`, the oldest dropped first).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from shared.presence import PresenceEvent, PseudonymScope

#: Keeps the write-ahead log from growing without bound after a long outage is drained.
JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
#: A writer waits this long for a concurrent reader (`vitrina-edge status`) to let go.
BUSY_TIMEOUT_MS = 5000
#: Occupancy reports kept while the broker is out of reach: a week of minutes (a report is
#: a few hundred bytes), after which the oldest give way.
MAX_REPORTS = 7 * 24 * 60

_DAILY = PseudonymScope.DAILY

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    anonymous INTEGER NOT NULL,
    created REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_anonymous ON events (anonymous, seq);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS occupancy (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    body TEXT NOT NULL
);
"""


class OutboxRow(NamedTuple):
    """One stored event. A NamedTuple rather than a frozen dataclass: a drain builds
    hundreds of thousands of them, and a tuple is several times cheaper to build."""

    seq: int
    event_id: str
    body: str


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    oldest_created: float | None
    dropped: int
    published: int


class Outbox:
    """Single-writer: the agent's event loop is the only caller of the mutating methods."""

    def __init__(
        self, path: Path | str, *, max_events: int,
        synchronous: Literal["normal", "full"] = "normal",
    ) -> None:
        if max_events < 1:
            raise ValueError("max_events must be positive")
        self.path = Path(path)
        self.max_events = max_events
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        self._db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
        self._db.executescript(_SCHEMA)
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        self._cursor = 0  # every row with seq <= _cursor has been handed out by claim()
        self.dropped = self._meta_int("dropped")
        self.published = self._meta_int("published")
        self._report_depth = int(
            self._db.execute("SELECT COUNT(*) FROM occupancy").fetchone()[0])
        self._report_cursor = 0
        self.reports_dropped = self._meta_int("reports_dropped")

    # -- writing ------------------------------------------------------------------------

    def put_many(self, events: Iterable[PresenceEvent]) -> int:
        """Store events (an event id already stored is ignored); returns how many were dropped
        to stay within `max_events`."""
        now = time.time()
        rows = [
            (event.event_id, int(event.scope is _DAILY), now,
             event.model_dump_json())
            for event in events
        ]
        if not rows:
            return 0
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO events (event_id, anonymous, created, body) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )
            self._depth += db.total_changes - before
            dropped = self._enforce_bound()
            if dropped:
                self._bump("dropped", dropped)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._depth = int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
            raise
        self.dropped += dropped
        return dropped

    def _enforce_bound(self) -> int:
        excess = self._depth - self.max_events
        if excess <= 0:
            return 0
        dropped = 0
        # Unclaimed anonymous rows, unclaimed others, and only then rows already handed out.
        for condition in ("anonymous = 1 AND seq > ?", "seq > ?", "seq <= ?"):
            if dropped >= excess:
                break
            cursor = self._db.execute(
                f"DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE {condition} "
                "ORDER BY seq LIMIT ?)",
                (self._cursor, excess - dropped),
            )
            dropped += cursor.rowcount
        self._depth -= dropped
        return dropped

    # -- handing out and acknowledging ----------------------------------------------------

    def claim(self, max_events: int, max_bytes: int) -> list[OutboxRow]:
        """The oldest rows not handed out yet, at most `max_events` and (but for a single
        oversized row) at most `max_bytes` of bodies."""
        cursor = self._db.execute(
            "SELECT seq, event_id, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (self._cursor, max_events),
        )
        cursor.row_factory = _row
        claimed: list[OutboxRow] = []
        size = 0
        for row in cursor:
            size += len(row.body) + 1
            if claimed and size > max_bytes:
                break
            claimed.append(row)
        if claimed:
            self._cursor = claimed[-1].seq
        return claimed

    def unclaim_from(self, seq: int) -> None:
        """Hand rows from `seq` on out again (their message never reached the broker)."""
        self._cursor = min(self._cursor, seq - 1)

    def release_all(self) -> None:
        self._cursor = 0
        self._report_cursor = 0

    def ack(self, first_seq: int, last_seq: int) -> int:
        """The broker has the message carrying rows first..last: delete them for good."""
        return self.ack_many([(first_seq, last_seq)])

    def ack_many(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Several acknowledged messages in one transaction (acks arrive in bursts)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            deleted = 0
            for first_seq, last_seq in ranges:
                deleted += db.execute(
                    "DELETE FROM events WHERE seq >= ? AND seq <= ?", (first_seq, last_seq)
                ).rowcount
            if deleted:
                self._bump("published", deleted)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._depth -= deleted
        self.published += deleted
        return deleted

    # -- occupancy reports ----------------------------------------------------------------

    def put_reports(self, bodies: Iterable[str]) -> int:
        """Store report bodies (JSON), oldest first; returns how many old ones were dropped
        to stay within `MAX_REPORTS`."""
        now = time.time()
        rows = [(now, body) for body in bodies]
        if not rows:
            return 0
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO occupancy (created, body) VALUES (?, ?)", rows)
            self._report_depth += len(rows)
            dropped = 0
            excess = self._report_depth - MAX_REPORTS
            if excess > 0:
                dropped = db.execute(
                    "DELETE FROM occupancy WHERE seq IN "
                    "(SELECT seq FROM occupancy ORDER BY seq LIMIT ?)", (excess,)).rowcount
                self._report_depth -= dropped
                self._bump("reports_dropped", dropped)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._report_depth = int(db.execute("SELECT COUNT(*) FROM occupancy").fetchone()[0])
            raise
        self.reports_dropped += dropped
        return dropped

    def claim_reports(self, limit: int) -> list[OutboxRow]:
        """The oldest reports not handed out yet (`event_id` is empty: reports have none)."""
        rows = [
            OutboxRow(seq, "", body) for seq, body in self._db.execute(
                "SELECT seq, body FROM occupancy WHERE seq > ? ORDER BY seq LIMIT ?",
                (self._report_cursor, limit))
        ]
        if rows:
            self._report_cursor = rows[-1].seq
        return rows

    def unclaim_reports_from(self, seq: int) -> None:
        self._report_cursor = min(self._report_cursor, seq - 1)

    def ack_reports(self, seqs: Iterable[int]) -> int:
        """The broker has these reports: delete them for good."""
        keys = [(seq,) for seq in seqs]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            before = db.total_changes
            db.executemany("DELETE FROM occupancy WHERE seq = ?", keys)
            deleted = db.total_changes - before
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._report_depth -= deleted
        return deleted

    @property
    def report_depth(self) -> int:
        return self._report_depth

    # -- status -------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def unclaimed(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM events WHERE seq > ?", (self._cursor,))
        return int(row.fetchone()[0])

    def record_status(self, status_json: str) -> None:
        """Keep the latest heartbeat, so `vitrina-edge status` can show it offline."""
        self._db.execute(
            "INSERT INTO meta (name, value) VALUES ('status', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (status_json,),
        )

    def event_ids(self) -> list[str]:
        """Ids of every stored event, oldest first (diagnostics and tests)."""
        return [row[0] for row in self._db.execute("SELECT event_id FROM events ORDER BY seq")]

    def close(self) -> None:
        self._db.close()

    def _meta_int(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _bump(self, name: str, amount: int) -> None:
        self._db.execute(
            "INSERT INTO meta (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = CAST(value AS INTEGER) + excluded.value",
            (name, str(amount)),
        )


def read_stats(path: Path | str) -> tuple[OutboxStats, str | None]:
    """Figures and the last recorded heartbeat, read without disturbing a running agent."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        depth, oldest = db.execute("SELECT COUNT(*), MIN(created) FROM events").fetchone()
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
    finally:
        db.close()
    stats = OutboxStats(
        depth=int(depth),
        oldest_created=None if oldest is None else float(oldest),
        dropped=int(meta.get("dropped", 0)),
        published=int(meta.get("published", 0)),
    )
    return stats, meta.get("status")


def _row(_cursor: sqlite3.Cursor, row: tuple[int, str, str]) -> OutboxRow:
    return OutboxRow(*row)


__all__ = ["Outbox", "OutboxRow", "OutboxStats", "read_stats"]

