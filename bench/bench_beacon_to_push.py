"""Store-beacon report to push: the app's HTTP report that its phone noticed the store's
beacon, to the push request arriving at the local FCM server; against the gateway's
presence path, to the same push, in the same run.

Every part is the real one, each in its own process as in production: a Mosquitto, a
migrated PostgreSQL database, the orchestrator's workers (`vitrina-cloud worker --stage
...` per stage, waking each other through the database), the API (`vitrina-cloud api`,
which wakes the scenario stage the same way), and the local FCM server. The database
holds one consenting customer per event (push and location-marketing consent, an FCM token,
the app install linked), the shop's in-store greeting (`demo.welcome`: a push on
`presence.enter`), and a store whose gateway's config names the store beacon.

The run has two phases at the same rate, each for its own customers:
- gateway: `enter` events of the customers' app beacons handed to a gateway's outbox
  (the edge's own `Outbox` and `MqttPublisher`), timed from the hand-off, as
  `bench_presence_to_push` does;
- store beacon: `POST .../customers/{id}/store-beacon` with the customer's token and the
  current rotating major/minor, as the app sends it, timed from just before the request.
Both end when the FCM server records the push. The ratio is the beacon path's figure over
the gateway path's.

    .venv/bin/python -m bench.bench_beacon_to_push [--rate 20] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import Engine, select
from sqlmodel import SQLModel

from bench.latency import KEY_ID, KEY_SECRET, STARTUP_TIMEOUT_S, TENANT
from bench.latency.figures import Spread
from bench.latency.gateways import Handoffs, feed, make_gateway
from bench.latency.probes import FcmJournal, wait_for_pushes, wait_subscribed
from bench.latency.services import (
    ROOT,
    fcm_server,
    parse_overrides,
    settings_environment,
    worker_commands,
    worker_processes,
    worker_settings,
)
from bench.latency.shoppers import Shopper, make_shoppers, seed
from bench.processes import CLOUD_COMMAND, stop_processes
from cloud.auth.models import Role
from cloud.db import make_engine, migrate, session_scope
from cloud.gateways.models import RegisteredGateway
from provisioning.local_broker import free_port, local_broker
from shared.beacon import advert_at, store_beacon_key
from shared.pseudonym import Pseudonymizer, TenantKey
from tests.cloud.factories import issue_key, register_shop_backend
from tests.support.postgres import fresh_database
from tests.support.shop_backend import ShopBackend

STORE = "store-1"
SHOP_UUID = UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")


def add_beacon_store(engine: Engine) -> None:
    """The store's gateway, with the store beacon in its config (as an admin's PUT of the
    config leaves it, the key named)."""
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        session.add(RegisteredGateway(
            tenant=TENANT, store=STORE, gateway="gw-1", created_at=now, enrolled_at=now,
            config={"version": 1, "beacon": {"uuid": str(SHOP_UUID), "key_id": KEY_ID}},
            config_version=1, config_saved_at=now))
        session.commit()


def public_ids(engine: Engine, shoppers: Sequence[Shopper]) -> dict[int, str]:
    customer = SQLModel.metadata.tables["customer"]
    wanted = {s.external_id: s.index for s in shoppers}
    with engine.connect() as connection:
        rows = connection.execute(select(customer.c.external_id, customer.c.public_id).where(
            customer.c.external_id.in_(list(wanted))))
        return {wanted[external]: public for external, public in rows}


@contextlib.contextmanager
def api_process(values: dict[str, Any], workdir: Path) -> Iterator[str]:
    port = free_port()
    mine = {**values, "api": {"host": "127.0.0.1", "port": port}}
    with (workdir / "api.log").open("wb") as sink:
        process = subprocess.Popen([*CLOUD_COMMAND, "api"], env=settings_environment(mine),
                                   stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError("the API did not start")
        yield url
    finally:
        stop_processes([process])


async def report_beacons(api: str, app_key: str, backend: ShopBackend,
                         shoppers: Sequence[Shopper], ids: dict[int, str], rate: float,
                         sent: dict[int, float]) -> None:
    """Each shopper's app reports the store beacon, `rate` reports a second, on schedule."""
    store_key = store_beacon_key(TenantKey.from_text(KEY_ID, KEY_SECRET), tenant=TENANT,
                                 store=STORE)
    async with httpx.AsyncClient(base_url=api, timeout=30.0,
                                 headers={"Authorization": f"Bearer {app_key}"}) as client:

        async def one(shopper: Shopper) -> None:
            advert = advert_at(store_key, time.time())
            headers = backend.headers(shopper.external_id, now=datetime.now(UTC))
            sent[shopper.index] = time.time()
            answer = await client.post(
                f"/tenants/{TENANT}/customers/{ids[shopper.index]}/store-beacon",
                headers=headers, json={"event": "enter", "uuid": str(SHOP_UUID),
                                       "major": advert.major, "minor": advert.minor})
            if answer.status_code != 200 or answer.json()["visit"] != "opened":
                raise RuntimeError(f"report refused: {answer.status_code} {answer.text}")

        begun = time.monotonic()
        tasks = []
        for position, shopper in enumerate(shoppers):
            await asyncio.sleep(max(0.0, begun + position / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(shopper)))
        await asyncio.gather(*tasks)


async def gateway_phase(engine: Engine, broker: Any, workdir: Path,
                        shoppers: Sequence[Shopper], rate: float, journal: FcmJournal,
                        handoffs: Handoffs) -> None:
    gateway = make_gateway(STORE, broker, workdir)
    stop = asyncio.Event()
    await gateway.publisher.start()
    if not await gateway.publisher.wait_connected(STARTUP_TIMEOUT_S):
        raise RuntimeError("the gateway did not connect")
    pump = asyncio.create_task(gateway.publisher.pump(stop))
    try:
        await wait_subscribed([gateway], engine)
        await feed([gateway], shoppers, rate, handoffs)
        await asyncio.to_thread(wait_for_pushes, journal, {s.index for s in shoppers})
    finally:
        stop.set()
        await pump
        await gateway.publisher.close(gateway.status(online=False))
        gateway.outbox.close()


def latencies(journal: FcmJournal, started: dict[int, float]) -> list[float]:
    arrivals = journal.arrivals("shopper")
    return [arrivals[index][0] - at for index, at in started.items() if index in arrivals]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="events (reports) a second")
    parser.add_argument("--seconds", type=float, default=20.0, help="each phase")
    parser.add_argument("--warmup", type=int, default=20, help="reports and events first")
    args = parser.parse_args()
    count = round(args.rate * args.seconds)
    pseudonymizer = Pseudonymizer(TenantKey.from_text(KEY_ID, KEY_SECRET))
    shoppers = make_shoppers(2 * (count + args.warmup), pseudonymizer)
    warm_gateway, by_gateway, rest = (shoppers[:args.warmup],
                                      shoppers[args.warmup:args.warmup + count],
                                      shoppers[args.warmup + count:])
    warm_beacon, by_beacon = rest[:args.warmup], rest[args.warmup:]
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="beacon-")))
        broker = stack.enter_context(local_broker())
        url = stack.enter_context(fresh_database("vitrina_beacon_bench"))
        migrate(url)
        engine = make_engine(url)
        stack.callback(engine.dispose)
        print(f"seeding {len(shoppers):,} customers", flush=True)
        seed(engine, shoppers, pseudonymizer)
        add_beacon_store(engine)
        backend = register_shop_backend(engine, tenant=TENANT)
        app_key = issue_key(engine, tenant=TENANT, role=Role.APP)
        ids = public_ids(engine, shoppers)
        fcm_url, credentials = stack.enter_context(fcm_server(workdir))
        values = worker_settings(database_url=url, broker=broker, fcm_url=fcm_url,
                                 credentials=credentials, overrides=parse_overrides([]))
        stack.enter_context(worker_processes(values, worker_commands(1, one_process=False),
                                             workdir))
        api = stack.enter_context(api_process(values, workdir))
        journal = FcmJournal(fcm_url)
        stack.callback(journal.close)

        handoffs = Handoffs()
        print(f"gateway path: {count} events at {args.rate:g}/s", flush=True)
        asyncio.run(gateway_phase(engine, broker, workdir, [*warm_gateway, *by_gateway],
                                  args.rate, journal, handoffs))
        print(f"store beacon path: {count} reports at {args.rate:g}/s", flush=True)
        sent: dict[int, float] = {}
        for phase in (warm_beacon, by_beacon):
            asyncio.run(report_beacons(api, app_key, backend, phase, ids, args.rate, sent))
            wait_for_pushes(journal, {s.index for s in phase})
        gateway = Spread.of(latencies(journal, {s.index: handoffs.at[s.index]
                                                for s in by_gateway}))
        beacon = Spread.of(latencies(journal, {s.index: sent[s.index] for s in by_beacon}))
    load_after = os.getloadavg()
    print(f"load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/"
          f"{load_before[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}/"
          f"{load_after[2]:.2f}; {os.cpu_count()} CPUs")
    print("| path | events | p50 ms | p90 ms | p99 ms | max ms | from |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(gateway.row("gateway presence to push", "the outbox hand-off"))
    print(beacon.row("store-beacon report to push", "just before the HTTP request"))
    print(f"ratio store beacon / gateway: p50 {beacon.p50 / gateway.p50:.2f}, "
          f"p99 {beacon.p99 / gateway.p99:.2f}")


if __name__ == "__main__":
    main()
