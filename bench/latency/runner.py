"""One phase from scratch: broker, database, FCM server, workers and gateways started;
the warm-up and the measured events fed; the figures computed from what arrived."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench.latency import KEY_ID, KEY_SECRET, SAMPLE_INTERVAL_S, STARTUP_TIMEOUT_S, STORES
from bench.latency.figures import Run, Spread, stage_spreads, stored_stages, throughputs
from bench.latency.gateways import Gateway, Handoffs, feed, make_gateway
from bench.latency.probes import (
    FcmJournal,
    FcmProbe,
    ProgressSampler,
    TransportProbe,
    wait_for_pushes,
    wait_subscribed,
)
from bench.latency.services import fcm_server, worker_commands, worker_processes, worker_settings
from bench.latency.shoppers import Shopper, make_shoppers, seed
from cloud.db import make_engine, migrate
from provisioning.local_broker import local_broker
from shared.pseudonym import Pseudonymizer, TenantKey
from tests.support.postgres import fresh_database


async def drive(
    gateways: Sequence[Gateway], engine: Engine, warmup: Sequence[Shopper],
    measured: Sequence[Shopper], rate: float, journal: FcmJournal, probe: FcmProbe,
    handoffs: Handoffs, sampler: ProgressSampler,
) -> tuple[float, float]:
    """Start the gateways, wait for the worker, warm up, then the measured phase; returns
    when (wall clock) the measured phase's feeding began and ended."""
    stop = asyncio.Event()
    for gateway in gateways:
        await gateway.publisher.start()
        if not await gateway.publisher.wait_connected(STARTUP_TIMEOUT_S):
            raise RuntimeError(f"gateway {gateway.store} did not connect")
    pumps = [asyncio.create_task(gateway.publisher.pump(stop)) for gateway in gateways]
    try:
        await wait_subscribed(gateways, engine)
        await feed(gateways, warmup, rate, handoffs)
        await asyncio.to_thread(wait_for_pushes, journal, {s.index for s in warmup})
        await asyncio.to_thread(analyze, engine)
        probe.start()
        sampler.start()
        begun = time.time()
        await feed(gateways, measured, rate, handoffs)
        ended = time.time()
        await asyncio.to_thread(wait_for_pushes, journal, {s.index for s in measured})
        sampler.stop()
        probe.stop()
        return begun, ended
    finally:
        stop.set()
        await asyncio.gather(*pumps)
        for gateway in gateways:
            await gateway.publisher.close(gateway.status(online=False))
            gateway.outbox.close()


def analyze(engine: Engine) -> None:
    """Planner statistics as autovacuum keeps them on a live database.

    The run is shorter than autovacuum's one-minute cycle, so without this the tables the
    run fills (journeys, messages, attempts, journal) keep the statistics of the seeding:
    empty. Every connection then checks each new row's foreign keys by scanning the
    parent table, which grows all run long."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))


def log_problems(workdir: Path) -> list[str]:
    """Warnings and errors the workers logged (a failed batch would explain a slow run)."""
    return [
        line for log in sorted(workdir.glob("worker-*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if " WARNING " in line or " ERROR " in line or " CRITICAL " in line
    ]


def run(
    rate: float, seconds: float, warmup_s: float, overrides: dict[str, Any], workers: int,
    *, one_process: bool,
) -> Run:
    """One phase from scratch: broker, database, FCM server, workers, gateways."""
    pseudonymizer = Pseudonymizer(TenantKey.from_text(KEY_ID, KEY_SECRET))
    warm_count, measured_count = round(rate * warmup_s), round(rate * seconds)
    shoppers = make_shoppers(warm_count + measured_count, pseudonymizer)
    warmup, measured = shoppers[:warm_count], shoppers[warm_count:]
    load_before = os.getloadavg()[0]
    problems: list[str] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="latency-")))
        stack.callback(lambda: problems.extend(log_problems(workdir)))
        broker = stack.enter_context(local_broker())
        url = stack.enter_context(fresh_database("vitrina_latency"))
        migrate(url)
        engine = make_engine(url)
        stack.callback(engine.dispose)
        print(f"{rate:g}/s: seeding {len(shoppers):,} customers", flush=True)
        seed(engine, shoppers, pseudonymizer)
        fcm_url, credentials = stack.enter_context(fcm_server(workdir))
        values = worker_settings(database_url=url, broker=broker, fcm_url=fcm_url,
                                 credentials=credentials, overrides=overrides)
        commands = worker_commands(workers, one_process=one_process)
        stack.enter_context(worker_processes(values, commands, workdir))
        journal = FcmJournal(fcm_url)
        stack.callback(journal.close)
        transport = TransportProbe(broker)
        stack.callback(transport.close)
        probe = FcmProbe(fcm_url, credentials)
        probe.warm()
        gateways = [make_gateway(f"store-{n + 1}", broker, workdir) for n in range(STORES)]
        handoffs = Handoffs()
        sampler = ProgressSampler(engine, SAMPLE_INTERVAL_S)
        print(f"{rate:g}/s: {warm_count:,} warm-up and {measured_count:,} measured events",
              flush=True)
        begun, ended = asyncio.run(drive(gateways, engine, warmup, measured, rate, journal,
                                         probe, handoffs, sampler))
        indexes = [s.index for s in measured]
        stages = stored_stages(engine, indexes)
    for line in problems:
        print(f"worker log: {line}", file=sys.stderr)
    arrivals = journal.arrivals("shopper")
    first = {index: times[0] for index, times in arrivals.items()}

    def latencies(part: Sequence[int]) -> list[float]:
        return [first[i] - handoffs.at[i] for i in part if i in first]

    third = len(indexes) // 3
    measured_ids = set(indexes)
    transport_latencies = [
        at - handoffs.at[index] for event_id, at in transport.arrival_by_event().items()
        if (index := handoffs.event_ids.get(event_id)) is not None and index in measured_ids
    ]
    probe_arrivals = journal.arrivals(FcmProbe.PREFIX)
    fcm_latencies = [probe_arrivals[i][0] - sent for i, sent in probe.sent.items()
                     if i in probe_arrivals]
    return Run(
        rate=rate, seconds=seconds, warmup=warm_count,
        workers=f"{workers}, all stages in one process" if one_process
        else f"{workers}, a process per stage",
        measured=measured_count, achieved_rate=measured_count / (ended - begun),
        end_to_end=Spread.of(latencies(indexes)),
        thirds=(Spread.of(latencies(indexes[:third])),
                Spread.of(latencies(indexes[third : 2 * third])),
                Spread.of(latencies(indexes[2 * third :]))),
        missing=sum(1 for i in indexes if i not in first),
        duplicates=sum(len(times) - 1 for times in arrivals.values()),
        transport=Spread.of(transport_latencies), fcm=Spread.of(fcm_latencies),
        stages=stage_spreads(stages, handoffs.at, first, indexes),
        throughput=throughputs(sampler.samples, begun=begun, ended=ended,
                               before=warm_count, measured=measured_count),
        log_problems=problems, load=(load_before, os.getloadavg()[0]),
    )
