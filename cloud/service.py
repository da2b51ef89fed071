"""Running the orchestrator: the worker, the API, or both in one process (the demo).

Signals are handled here, not by uvicorn: SIGINT/SIGTERM set one stop event, the API
stops accepting requests, the worker finishes and acknowledges the batch in hand, and
only then does the process leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from datetime import datetime

import uvicorn
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.db import make_engine, utc_now, wait_for_database
from cloud.delivery.fcm import FcmSender
from cloud.delivery.push import PushSender
from cloud.ingest.consumer import PresenceConsumer
from cloud.settings import Settings

log = logging.getLogger(__name__)


@contextlib.contextmanager
def push_sender(settings: Settings) -> Iterator[PushSender | None]:
    """The FCM sender when FCM is configured (closed on exit); None otherwise, and then
    the recognition push is off: nothing is decided that could not be sent."""
    if settings.fcm is None:
        log.warning("no FCM settings: the recognition push is off")
        yield None
        return
    with FcmSender(settings.fcm) as sender:
        yield sender


def install_stop_signals(stop: asyncio.Event) -> Callable[[], None]:
    """SIGINT and SIGTERM set `stop`; returns a function that restores the defaults."""
    loop = asyncio.get_running_loop()
    handled = (signal.SIGINT, signal.SIGTERM)
    for sig in handled:
        loop.add_signal_handler(sig, stop.set)

    def restore() -> None:
        for sig in handled:
            loop.remove_signal_handler(sig)

    return restore


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (it would re-raise the signal on exit and
    end the process before the worker has finished its batch)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_worker(
    settings: Settings,
    *,
    stop: asyncio.Event,
    engine: Engine | None = None,
    sender: PushSender | None = None,
    client_id: str | None = None,
    now: Callable[[], datetime] = utc_now,
) -> PresenceConsumer:
    """Consume until `stop` is set; returns the consumer (its totals) when done."""
    own_engine = engine is None
    engine = engine if engine is not None else make_engine(settings.database_url)
    consumer = PresenceConsumer(
        settings=settings, engine=engine, sender=sender, client_id=client_id, now=now
    )
    try:
        await consumer.run(stop)
    finally:
        if own_engine:
            engine.dispose()
    return consumer


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event,
    sender: PushSender | None = None,
    now: Callable[[], datetime] = utc_now,
    started: Callable[[int], None] | None = None,
) -> None:
    """API and worker in one process, sharing one engine; returns after both stopped.

    `started` is called with the API's bound port once it listens (port 0 picks one).
    """
    engine = make_engine(settings.database_url)
    await asyncio.to_thread(wait_for_database, engine)
    consumer = PresenceConsumer(settings=settings, engine=engine, sender=sender, now=now)
    app = create_app(settings, engine=engine, worker=consumer, now=now)
    server = _Server(uvicorn.Config(
        app, host=settings.api.host, port=settings.api.port, log_config=None,
        lifespan="on", access_log=False,
    ))
    worker = asyncio.create_task(consumer.run(stop), name="vitrina-worker")
    api = asyncio.create_task(server.serve(), name="vitrina-api")

    async def stop_api_on_signal() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_api_on_signal())
    try:
        # uvicorn exposes startup only as a flag, so it is polled.
        while not server.started and not api.done():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if server.started and started is not None:
            started(_bound_port(server))
        await asyncio.wait({worker, api}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()  # one part ended (stop, or a failure): end the other too
        await asyncio.gather(worker, api, return_exceptions=False)
    finally:
        stop.set()
        watcher.cancel()
        for task in (worker, api):
            if not task.done():
                task.cancel()
        engine.dispose()


def _bound_port(server: uvicorn.Server) -> int:
    for listener in server.servers:
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("the API server has no listening socket")
