"""`vitrina-cloud dev visit`: a customer's phone walks into a store, seen by a gateway (its
app's beacon) or reported by the app (a location fix); then the wait until the
orchestrator has handled what the visit started.

The gateway's visit goes through the gateway's own pipeline and MQTT, so the orchestrator
receives what a store would send: a pseudonym of the install id, never the id. How far
the orchestrator got is read from its database (`dev.progress`): no API shows its queues.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud.db import make_engine
from dev.gateway import VISIT_SECONDS, InstallIdError, record_app_visit, write_gateway_config
from dev.orchestrator import EDGE_COMMAND
from dev.progress import Progress, read_progress
from dev.session import DevSession, ToolError, admin_api, checked, pushes_received
from provisioning.local_broker import LocalBroker

#: How long a visit waits for the orchestrator to finish with what the gateway published.
SETTLE_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.2
#: A replay of a short recording takes seconds; this only turns a hang into an error.
REPLAY_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class VisitResult:
    gateway: str
    published: int
    settled: bool
    pushes: list[dict[str, Any]]


def _broker(session: DevSession) -> LocalBroker:
    return LocalBroker(host=session.broker_host, port=session.broker_port, kind="local",
                       mqtt_v5=session.broker_mqtt_v5, workdir=Path(session.state_dir), pid=0)


def visit_by_beacon(session: DevSession, *, install_id: str, store: str) -> VisitResult:
    """A gateway in `store` replays a recording of a phone whose app advertises
    `install_id`; then wait until the orchestrator has done everything the visit asked of
    it. Each visit is a gateway of its own, so that its counts say when that is."""
    stamp = datetime.now(UTC)
    gateway = f"dev-{stamp:%H%M%S}"
    workdir = Path(session.state_dir) / "visits" / f"{stamp:%Y%m%d-%H%M%S-%f}"
    workdir.mkdir(parents=True)
    try:
        # The visit has just happened: it ends now.
        capture = record_app_visit(workdir / "visit.pcapng", install_id=install_id,
                                   start=stamp.timestamp() - VISIT_SECONDS)
    except InstallIdError as error:
        raise ToolError(str(error)) from None
    config = write_gateway_config(
        workdir / "gateway.toml", tenant=session.tenant, store=store, gateway=gateway,
        key_id=session.key_id, tenant_key=session.tenant_key, broker=_broker(session),
        outbox=workdir / "outbox.db",
    )
    before = len(pushes_received(session))
    replay = subprocess.run(
        [EDGE_COMMAND, "replay", "--config", str(config), "--pcap", str(capture),
         "--max-speed", "--quiet"],
        capture_output=True, text=True, timeout=REPLAY_TIMEOUT_S, check=False,
    )
    (workdir / "replay.log").write_text(replay.stdout + replay.stderr, encoding="utf-8")
    if replay.returncode != 0:
        raise ToolError(f"the gateway's replay failed (exit {replay.returncode}): "
                        f"{(replay.stderr or replay.stdout).strip()[-500:]}")
    progress = _wait_for_gateway(session, store=store, gateway=gateway)
    return VisitResult(gateway=gateway, published=progress.published if progress else 0,
                       settled=progress is not None and progress.settled,
                       pushes=pushes_received(session)[before:])


def _polls(timeout: float) -> Iterator[None]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        yield
        time.sleep(POLL_INTERVAL_S)


def _wait_for_gateway(session: DevSession, *, store: str, gateway: str) -> Progress | None:
    engine = make_engine(session.database_url)
    latest: Progress | None = None
    try:
        for _ in _polls(SETTLE_TIMEOUT_S):
            latest = read_progress(engine, tenant=session.tenant, store=store, gateway=gateway)
            if latest.settled:
                break
    finally:
        engine.dispose()
    return latest


def visit_by_location(session: DevSession, *, customer: str, lat: float, lon: float,
                      accuracy_m: float) -> dict[str, Any]:
    """A location fix for `customer`, as the app reports it; then wait until the engine
    has handled what it started."""
    with admin_api(session) as api:
        outcome: dict[str, Any] = checked(api.post(
            f"/customers/{customer}/locations",
            json={"lat": lat, "lon": lon, "accuracy_m": accuracy_m}))
    _wait_for_engine(session)
    return outcome


def _wait_for_engine(session: DevSession) -> None:
    """Until no trigger waits for the engine and no message waits to be sent (or the
    bound passes: a message held on purpose is what `why` then shows)."""
    engine = make_engine(session.database_url)
    try:
        for _ in _polls(SETTLE_TIMEOUT_S / 2):
            progress = read_progress(engine, tenant=session.tenant, store="", gateway="")
            if progress.unhandled_triggers == 0 and progress.waiting_messages == 0:
                return
    finally:
        engine.dispose()
