"""Running a worker in the background of a synchronous test, and publishing to it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import paho.mqtt.client as mqtt
import uvicorn
from fastapi import FastAPI
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import Engine

from cloud.api.live import end_live_streams
from cloud.ingest.consumer import PresenceConsumer
from cloud.service import api_server_config
from cloud.settings import Settings
from provisioning.local_broker import LocalBroker

T = TypeVar("T")

#: Generous: a loaded 2-core CI machine can take seconds to hand a message through.
WAIT_S = 20.0


@contextlib.contextmanager
def running_worker(
    settings: Settings, engine: Engine, *, client_id: str | None = None,
    end_session: bool = True,
) -> Iterator[PresenceConsumer]:
    """A consumer on its own event loop in a thread; stopped (cleanly) on exit."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    holder: list[PresenceConsumer] = []
    errors: list[BaseException] = []

    def main() -> None:
        asyncio.set_event_loop(loop)

        async def go() -> None:
            consumer = PresenceConsumer(
                settings=settings, engine=engine, client_id=client_id,
                end_session_on_stop=end_session,
            )
            holder.append(consumer)
            await consumer.run(stop)

        try:
            loop.run_until_complete(go())
        except BaseException as error:
            errors.append(error)
        finally:
            loop.close()

    thread = threading.Thread(target=main, name="test-worker", daemon=True)
    thread.start()
    wait_for(lambda: holder and holder[0].connected, what="worker connected")
    try:
        yield holder[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=WAIT_S)
        assert not thread.is_alive(), "worker did not stop"
        if errors:
            raise errors[0]


@contextlib.contextmanager
def running_loop(run: Callable[[asyncio.Event], Awaitable[object]], *, name: str
                 ) -> Iterator[None]:
    """`run(stop)` (a worker's loop) on an event loop of its own in a thread; stopped, and
    its failure raised, on exit."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    errors: list[BaseException] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(run(stop))
        except BaseException as error:
            errors.append(error)
        finally:
            loop.close()

    thread = threading.Thread(target=main, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=WAIT_S)
        assert not thread.is_alive(), f"{name} did not stop"
        if errors:
            raise errors[0]


def wait_for(condition: Callable[[], T], *, what: str, timeout: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for: {what}")


@contextlib.contextmanager
def publisher(broker: LocalBroker, client_id: str = "") -> Iterator[mqtt.Client]:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def publish_all(
    client: mqtt.Client, messages: Sequence[tuple[str, bytes]], *, retain: bool = False
) -> None:
    infos = [client.publish(topic, payload, qos=1, retain=retain) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(timeout=WAIT_S)


@contextlib.contextmanager
def running_api(app: FastAPI, port: int, *, tls: tuple[Path, Path] | None = None
                ) -> Iterator[str]:
    """The API on a real port in a thread (for a provider posting receipts, or a browser),
    served as production serves it (`api_server_config`: its limits included); over
    HTTPS as `localhost` with `tls` (its certificate and key files)."""
    server = uvicorn.Server(api_server_config(
        app, app.state.settings, host="127.0.0.1", port=port, access_log=False,
        lifespan="off", ssl_certfile=None if tls is None else str(tls[0]),
        ssl_keyfile=None if tls is None else str(tls[1]),
    ))
    thread = threading.Thread(target=server.run, name="test-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "API did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}" if tls is None else f"https://localhost:{port}"
    finally:
        end_live_streams(app)  # open event streams would keep the server waiting
        server.should_exit = True
        thread.join(timeout=10)
