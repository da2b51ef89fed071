"""Waking a stage that runs in another process: PostgreSQL's LISTEN/NOTIFY.

The worker's three stages (presence ingest, scenarios, delivery) hand work to each
other through tables; each also polls, so nothing depends on being woken. In one
process a stage wakes the next with a direct call. Deployed apart (one `vitrina-cloud
worker --stage ...` per stage, each a service the process manager runs and restarts:
provisioning/systemd/, docker/compose.yaml), so that none waits for the others' share of
one interpreter lock, the next stage's process listens (`Listener`) on a channel the
database itself notifies: a statement inserting into a table of work announces it on
the table's channel (migration 0014: scenario triggers, queued messages and webhooks).
PostgreSQL delivers the notification when the inserting transaction commits and only
then, and folds repeats within one transaction into one.

SQLite has no notifications; there the worker runs all three stages in one process (a
`--stage` that leaves some to other processes is refused: `cloud.service.check_stages`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from enum import StrEnum

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

#: How often the listening thread looks up from waiting to see whether it should stop.
STOP_CHECK_S = 0.5
#: How the listening connection shows in `pg_stat_activity`.
APPLICATION_NAME = "vitrina-listener"
#: Pause before listening again after the connection was lost (the stage still polls).
RECONNECT_PAUSE_S = 2.0


class Channel(StrEnum):
    """What the database notifies on (the names migration 0014 gives its triggers)."""

    #: Triggers were recorded (ingest, the API): the scenario stage has work.
    TRIGGERS = "vitrina_triggers"
    #: Messages or webhooks were queued (scenarios): the delivery stage has work.
    QUEUED = "vitrina_queued"


class Listener:
    """Calls `callbacks[channel]` on each notification of a channel, from a thread of its
    own with a connection of its own (the callbacks must be thread-safe, as the stages'
    `wake` methods are). A lost connection is logged and opened again; meanwhile the
    stages keep polling.

        with Listener(database_url, {Channel.TRIGGERS: scenarios.wake}):
            ...
    """

    def __init__(self, database_url: str, callbacks: Mapping[Channel, Callable[[], None]]) -> None:
        self._conninfo = _conninfo(database_url)
        self._callbacks = dict(callbacks)
        self._stopping = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vitrina-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_listening(self, timeout: float) -> bool:
        """Whether the listener is subscribed (for tests and start-up checks)."""
        return self._listening.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def __enter__(self) -> Listener:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except psycopg.Error as error:
                log.warning("listening for wake-ups failed (%s); the stages poll meanwhile",
                            error)
            self._listening.clear()
            self._stopping.wait(RECONNECT_PAUSE_S)

    def _listen(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True) as connection:
            for channel in self._callbacks:
                connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel.value)))
            # Whatever was announced before LISTEN took effect was missed: catch up.
            for callback in self._callbacks.values():
                callback()
            self._listening.set()
            while not self._stopping.is_set():
                for notify in connection.notifies(timeout=STOP_CHECK_S):
                    woken = self._callbacks.get(Channel(notify.channel))
                    if woken is not None:
                        woken()
                    if self._stopping.is_set():
                        return


def _conninfo(database_url: str) -> str:
    """A libpq connection string from the SQLAlchemy URL the settings hold."""
    url = make_url(database_url)
    parts = {"host": url.host, "port": url.port, "dbname": url.database, "user": url.username,
             "password": url.password, "application_name": APPLICATION_NAME, **url.query}
    return psycopg.conninfo.make_conninfo(
        **{key: str(value) for key, value in parts.items() if value is not None}
    )
