"""Running the orchestrator: the worker (all three stages in one process, or only those
its `--stage` options name: deployed, each stage is a service of its own that the process
manager starts and restarts), the API, or both in one process (the demo).

Signals are handled here, not by uvicorn: SIGINT/SIGTERM set one stop event, the API
stops accepting requests, the worker finishes and acknowledges the batch in hand, and
only then does the process leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import uvicorn
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

from cloud.api import create_app
from cloud.api.live import end_live_streams
from cloud.channels.registry import AnyAdapter, adapters
from cloud.db import (
    is_postgres,
    make_engine,
    normalize_url,
    utc_now,
    wait_for_database,
    worker_engine,
)
from cloud.delivery.senders import AnySender
from cloud.delivery.worker import DeliveryWorker, delivery_worker
from cloud.ingest.consumer import PresenceConsumer
from cloud.scenarios.run import EngineConfig
from cloud.scenarios.sending import Links
from cloud.scenarios.worker import ScenarioWorker
from cloud.settings import (
    LOOPBACK_BASE_URL,
    QuietHours,
    ScenarioSettings,
    Settings,
    is_loopback_url,
)
from cloud.simulation.jobs import SimulationRunner
from cloud.wakeups import Channel, Listener

log = logging.getLogger(__name__)

#: Allocations between young-generation collections (CPython's default is 700). A worker
#: makes tens of thousands of short-lived objects per round (rows, ORM state, payloads);
#: at the default the collector runs hundreds of times a second and its older-generation
#: passes stall a round now and then.
GC_YOUNG_THRESHOLD = 20_000
#: How many younger collections trigger an older one (CPython's default is 10 for both).
GC_OLDER_THRESHOLD = 50


def settle_garbage_collector() -> None:
    """Call once a long-running process has started: what exists now (modules, settings,
    compiled templates) lives as long as the process, so the collector stops scanning it
    (`gc.freeze`), and collects less often, so that a full collection seldom stalls a
    round (measured: docs/benchmarks/latency.md)."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, GC_OLDER_THRESHOLD, GC_OLDER_THRESHOLD)


def engine_config(settings: Settings) -> EngineConfig:
    """What the scenario engine needs of the settings: its own section, and how to
    address tracked links."""
    return EngineConfig(
        settings=settings.scenarios,
        links=Links(
            base_url=settings.tracking.public_base_url,
            secret=settings.tracking.secret.get_secret_value(),
        ),
    )


class Stage(StrEnum):
    """A worker's loops; each may run in a process of its own (on PostgreSQL, where the
    database wakes a stage whose predecessor runs elsewhere)."""

    INGEST = "ingest"
    SCENARIOS = "scenarios"
    DELIVERY = "delivery"


ALL_STAGES = frozenset(Stage)


class StagesApartError(ValueError):
    """Some stages asked for, on a database that cannot wake the others' processes."""


def check_stages(database_url: str, stages: frozenset[Stage]) -> None:
    """Raise `StagesApartError` when `stages` leaves some stages to other processes on a
    database other than PostgreSQL: only PostgreSQL's notifications wake a stage in
    another process, so elsewhere work handed over would wait for the next poll."""
    if stages == ALL_STAGES:
        return
    backend = make_url(normalize_url(database_url)).get_backend_name()
    if backend != "postgresql":
        named = ", ".join(stage.value for stage in Stage if stage in stages) or "none"
        raise StagesApartError(
            f"running only some stages here ({named}) needs PostgreSQL, which wakes the "
            f"stages in other processes; on {backend} run all three in one worker "
            "(no --stage)"
        )


@dataclass(slots=True)
class Workers:
    """The loops of a worker process: presence ingest, scenarios, delivery (all three, or
    those its `--stage` options name)."""

    consumer: PresenceConsumer | None
    scenarios: ScenarioWorker | None
    delivery: DeliveryWorker | None
    #: Dry runs, beside the scenario worker (they run its code on a scratch database).
    simulations: SimulationRunner | None = None

    async def run(self, stop: asyncio.Event) -> None:
        loops = {"vitrina-ingest": self.consumer, "vitrina-scenarios": self.scenarios,
                 "vitrina-delivery": self.delivery, "vitrina-simulations": self.simulations}
        tasks = [asyncio.create_task(loop.run(stop), name=name)
                 for name, loop in loops.items() if loop is not None]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            stop.set()  # one loop ended (stop, or a failure): end the others too
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()


@contextlib.contextmanager
def workers(
    settings: Settings,
    *,
    engine: Engine,
    senders: Mapping[str, AnySender] | None = None,
    now: Callable[[], datetime],
    client_id: str | None = None,
    stages: frozenset[Stage] = ALL_STAGES,
    retire: asyncio.Event | None = None,
) -> Iterator[Workers]:
    """The loops of `stages`. A stage wakes the next one directly when both run here;
    one whose predecessor runs in another process is woken through the database
    (`cloud.wakeups`), and without that (SQLite) only by its own polling."""
    with contextlib.ExitStack() as stack:
        delivery = None
        if Stage.DELIVERY in stages:
            delivery = stack.enter_context(
                delivery_worker(settings, engine=engine, now=now, senders=senders)
            )
        scenarios, simulations = None, None
        if Stage.SCENARIOS in stages:
            scenarios = ScenarioWorker(
                engine=engine, config=engine_config(settings), now=now,
                on_queued=(lambda _ids: delivery.wake()) if delivery is not None else None,
            )
            simulations = SimulationRunner(
                engine=engine, config=engine_config(settings), now=now,
                poll_interval_s=settings.scenarios.poll_interval_s,
            )
        consumer = None
        if Stage.INGEST in stages:
            consumer = PresenceConsumer(
                settings=settings, engine=engine, client_id=client_id, now=now,
                on_triggers=scenarios.wake if scenarios is not None else None,
                retire=retire,
            )
        remote: dict[Channel, Callable[[], None]] = {}
        if scenarios is not None and consumer is None:
            remote[Channel.TRIGGERS] = scenarios.wake
        if delivery is not None and scenarios is None:
            remote[Channel.QUEUED] = delivery.wake
        if remote and is_postgres(engine):
            stack.enter_context(Listener(settings.database_url, remote))
        yield Workers(consumer=consumer, scenarios=scenarios, delivery=delivery,
                      simulations=simulations)


#: The signal that retires a worker for good (`PresenceConsumer`): SIGTERM stops it with
#: its broker session kept for a restart, this one ends the session once drained.
RETIRE_SIGNAL = signal.SIGUSR1


def install_stop_signals(
    stop: asyncio.Event, retire: asyncio.Event | None = None
) -> Callable[[], None]:
    """SIGINT and SIGTERM set `stop`, and `RETIRE_SIGNAL` sets `retire` (when given);
    returns a function that restores the defaults."""
    loop = asyncio.get_running_loop()
    handled: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
    for sig in handled:
        loop.add_signal_handler(sig, stop.set)
    if retire is not None:
        loop.add_signal_handler(RETIRE_SIGNAL, retire.set)
        handled = (*handled, RETIRE_SIGNAL)

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
    senders: Mapping[str, AnySender] | None = None,
    client_id: str | None = None,
    now: Callable[[], datetime] = utc_now,
    stages: frozenset[Stage] = ALL_STAGES,
    retire: asyncio.Event | None = None,
) -> PresenceConsumer | None:
    """Ingest, scenarios and delivery (or those of `stages`: `check_stages`) until `stop`
    is set, or until `retire` is set and the consumer has drained and ended its broker
    session (`PresenceConsumer`); returns the consumer (its totals; None without ingest)
    when done."""
    check_stages(settings.database_url, stages)
    own_engine = engine is None
    engine = engine if engine is not None else worker_engine(settings.database_url)
    try:
        with workers(settings, engine=engine, senders=senders, now=now,
                     client_id=client_id, stages=stages, retire=retire) as running:
            await running.run(stop)
    finally:
        if own_engine:
            engine.dispose()
    return running.consumer


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event,
    senders: Mapping[str, AnySender] | None = None,
    now: Callable[[], datetime] = utc_now,
    started: Callable[[int], None] | None = None,
) -> None:
    """API and workers in one process, sharing one engine; returns after all stopped.

    `started` is called with the API's bound port once it listens (port 0 picks one).
    """
    engine = make_engine(settings.database_url)
    await asyncio.to_thread(wait_for_database, engine)
    with workers(settings, engine=engine, senders=senders, now=now) as running:
        assert running.scenarios is not None  # all stages
        app = create_app(settings, engine=engine, worker=running.consumer, now=now,
                         on_triggers=running.scenarios.wake)
        server = _Server(api_server_config(app, settings, lifespan="on", access_log=False))
        worker = asyncio.create_task(running.run(stop), name="vitrina-workers")
        api = asyncio.create_task(server.serve(), name="vitrina-api")

        async def stop_api_on_signal() -> None:
            await stop.wait()
            end_live_streams(app)  # uvicorn waits for open streams to end
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


def api_server_config(app: ASGIApp, settings: Settings, **options: Any) -> uvicorn.Config:
    """How the API is served: h11, whose limit on the request line and headers together
    (`api.max_header_bytes`) answers a larger one with 400 and closes the connection
    instead of buffering it (httptools, which uvicorn would pick when installed, has no
    such setting). Bodies are limited per route by the application (`cloud.api.limits`).
    `options` are further `uvicorn.Config` arguments (a test's port, TLS)."""
    values: dict[str, Any] = {
        "host": settings.api.host, "port": settings.api.port, "log_config": None,
        "http": "h11", "h11_max_incomplete_event_size": settings.api.max_header_bytes,
        # Forwarded headers are believed only from api.trusted_proxies (create_app).
        "proxy_headers": False,
        **options,
    }
    return uvicorn.Config(app, **values)


def _bound_port(server: uvicorn.Server) -> int:
    for listener in server.servers:
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("the API server has no listening socket")


# --- start-up: what the settings leave off, said once -----------------------------------


def configuration_notes(settings: Settings) -> list[tuple[int, str]]:
    """What a developer would otherwise find out from a message that never came: the
    channels that are off, a public base URL no phone can reach, the quiet hours that hold
    messages. Each as (log level, sentence)."""
    notes = [(logging.WARNING, _channel_off(adapter)) for adapter in adapters()
             if settings.channel_settings(adapter) is None]
    base_url = settings.tracking.public_base_url
    if is_loopback_url(base_url):
        default = " (the default)" if base_url == LOOPBACK_BASE_URL else ""
        notes.append((logging.WARNING, (
            f"tracking.public_base_url is {base_url}{default}, this machine only: links in "
            "messages (tracked links, unsubscribe, open reports) will not work on a "
            "customer's device. Set VITRINA_TRACKING__PUBLIC_BASE_URL to the address "
            "customers reach this API at.")))
    notes.append((logging.INFO, quiet_hours_note(settings)))
    return notes


def _channel_off(adapter: AnyAdapter) -> str:
    required = [name for name, info in adapter.settings_model.model_fields.items()
                if info.is_required()]
    variables = ", ".join(f"VITRINA_CHANNELS__{adapter.name.upper()}__{name.upper()}"
                          for name in required)
    return (f"channel {adapter.name} is not configured: {adapter.unconfigured}. Set "
            f"[channels.{adapter.name}] ({variables}).")


def quiet_hours_note(settings: Settings) -> str:
    """The quiet hours the settings give: everyone's, then each tenant's (its own or
    everyone's), and what comes before them (what tenants and stores set through the API
    is in the database, which the note does not read: it is said before the database is
    waited for, and the console shows it)."""
    scenarios = settings.scenarios
    window = _window(scenarios.quiet_hours)
    if window is None:
        text = "quiet hours are off: marketing messages go out at any hour"
    else:
        text = (f"quiet hours {window} on each customer's clock (else their store's, else "
                f"their tenant's, else {scenarios.default_time_zone}): marketing messages "
                "decided then are held until they end, not dropped")
    tenants = [_tenant_quiet_hours(scenarios, tenant) for tenant in settings.tenants]
    return (f"{text}; per tenant: {', '.join(tenants) or 'no tenant configured'}. A tenant's "
            "own quiet hours and time zone (PUT /tenants/{tenant}/preferences, the "
            "console's Shop settings) come before these, and a store's own before the "
            "tenant's for the journeys its visits start.")


def _tenant_quiet_hours(scenarios: ScenarioSettings, tenant: str) -> str:
    """`acme 22:00-08:00 (its own)`, `beta off (everyone's)`."""
    whose = "its own" if tenant in scenarios.tenant_quiet_hours else "everyone's"
    return f"{tenant} {_window(scenarios.quiet_hours_for(tenant)) or 'off'} ({whose})"


def _window(quiet: QuietHours | None) -> str | None:
    """The window as `21:00-09:00`, or None when there are no quiet hours."""
    if quiet is None or quiet.start == quiet.end:
        return None
    return f"{quiet.start:%H:%M}-{quiet.end:%H:%M}"


def log_configuration(settings: Settings) -> None:
    """Say `configuration_notes` once, at the start of a long-running command."""
    for level, text in configuration_notes(settings):
        log.log(level, text)
