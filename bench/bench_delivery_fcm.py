"""Mobile push throughput: FcmSender (firebase-admin) against the local FCM server.

Starts the local FCM server as a process of its own (it stands in for Google, so it gets
its own process, as Google would have its own machines), then in one run measures:
- raw: http.client on one connection, ready-made bodies (what the server takes from the
  simplest client: a reference for the server, not for the sender);
- requests: a keep-alive `requests.Session` POST loop (the previous baseline);
- bare: aiohttp POSTing ready-made FCM v1 bodies, 500 at a time over the sender's pool
  size, with an access token fetched once: the cheapest client that could send these
  pushes the way the sender does (same transport, no SDK, no message building);
- fcm: one worker thread calling `FcmSender.send` on batches of messages (message
  building, firebase-admin's encoding and send_each_async fan-out, OAuth, result mapping).
The bare and fcm phases alternate for a few rounds and the medians are reported; the
ratio fcm/bare says what the SDK and our layer cost over the same wire and transport.

Beside the rates it reports CPU time per send in the client process and in the server
process (from /proc): on a shared machine the rates move with everyone else's load, the
CPU cost per send much less, and 1e6 / max(client µs, server µs) is the rate the pair
would reach with a free core each.

    .venv/bin/python -m bench.bench_delivery_fcm [--messages N] [--batch N] [--rounds N]
        [--out PATH]

Target: >= 2,000 pushes/s with one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import requests
from google.auth.transport import requests as auth_requests
from google.oauth2 import service_account

from cloud.channels.fcm import POOL_CONNECTIONS, FcmSender, FcmSettings, PushMessage, build_message
from cloud.channels.retry import NO_RETRY
from sandbox.fcm import make_token

TARGET_PUSHES_PER_S = 2_000
ROOT = Path(__file__).resolve().parent.parent
PROJECT = "vitrina-bench"
#: The bench stops itself: no phase may run longer than this.
PHASE_LIMIT_S = 120.0


@dataclass(frozen=True, slots=True)
class Phase:
    """One measured phase: sends per second and CPU µs per send on each side."""

    per_s: float
    client_us: float
    server_us: float | None

    @property
    def capacity_per_s(self) -> float | None:
        """The rate with a free core for the client and one for the server."""
        if self.server_us is None:
            return None
        return 1e6 / max(self.client_us, self.server_us)


@dataclass(frozen=True, slots=True)
class Figures:
    messages: int
    batch: int
    rounds: int
    raw: Phase
    requests_loop: Phase
    bare: Phase
    fcm: Phase
    fcm_rounds: tuple[float, ...]
    load_before: float
    load_after: float

    @property
    def ratio(self) -> float:
        return self.fcm.per_s / self.bare.per_s


def process_cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds of a process (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(count: int, server_pid: int, run: Callable[[], None]) -> Phase:
    server_before = process_cpu_s(server_pid)
    cpu_before = time.process_time()
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    client_us = (time.process_time() - cpu_before) / count * 1e6
    server_after = process_cpu_s(server_pid)
    server_us = (
        None
        if server_before is None or server_after is None
        else (server_after - server_before) / count * 1e6
    )
    return Phase(per_s=count / elapsed, client_us=client_us, server_us=server_us)


def median_phase(phases: list[Phase]) -> Phase:
    servers = [p.server_us for p in phases if p.server_us is not None]
    return Phase(
        per_s=statistics.median(p.per_s for p in phases),
        client_us=statistics.median(p.client_us for p in phases),
        server_us=statistics.median(servers) if servers else None,
    )


@contextlib.contextmanager
def fcm_server_process(workdir: Path) -> Iterator[tuple[str, Path, int]]:
    credentials = workdir / "service-account.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.fcm",
            "--port",
            "0",
            "--project",
            PROJECT,
            "--credentials-out",
            str(credentials),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        announced = json.loads(process.stdout.readline())
        yield str(announced["url"]), credentials, process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def pushes(count: int) -> list[PushMessage]:
    return [
        PushMessage(
            token=make_token(),
            title="20% off dryers",
            body="Only today, in the store you are passing",
            idempotency_key=f"bench-{index}",
            image_url="https://shop.example/img/dryer.png",
            deep_link="vitrina://offers/dryer-20",
            data={"offer_id": "dryer-20"},
        )
        for index in range(count)
    ]


def access_token(credentials: Path) -> str:
    scoped = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        str(credentials), scopes=["https://www.googleapis.com/auth/firebase.messaging"]
    )
    scoped.refresh(auth_requests.Request())
    return str(scoped.token)


def ready_bodies(messages: list[PushMessage]) -> list[bytes]:
    """The bodies the sender would send (same message building, encoded once, up front)."""
    from firebase_admin import messaging

    return [
        json.dumps(
            {"message": messaging._MessagingService.encode_message(build_message(m))},
            separators=(",", ":"),
        ).encode()
        for m in messages
    ]


def raw_loop(url: str, token: str, bodies: list[bytes]) -> None:
    """http.client on one connection: what the server takes from the simplest client."""
    parsed = urlsplit(url)
    path = f"/v1/projects/{PROJECT}/messages:send"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=10)
    deadline = time.monotonic() + PHASE_LIMIT_S
    try:
        for body in bodies:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"raw loop got HTTP {response.status}")
            if time.monotonic() > deadline:
                raise RuntimeError("raw loop exceeded its time limit")
    finally:
        connection.close()


def requests_loop(url: str, token: str, bodies: list[bytes]) -> None:
    endpoint = f"{url}/v1/projects/{PROJECT}/messages:send"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    deadline = time.monotonic() + PHASE_LIMIT_S
    with requests.Session() as session:
        session.trust_env = False
        for body in bodies:
            session.post(endpoint, data=body, headers=headers, timeout=10).raise_for_status()
            if time.monotonic() > deadline:
                raise RuntimeError("requests loop exceeded its time limit")


async def bare_async(url: str, token: str, bodies: list[bytes], batch: int) -> None:
    """aiohttp, `batch` requests at a time over a pool of the sender's size."""
    endpoint = f"{url}/v1/projects/{PROJECT}/messages:send"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=POOL_CONNECTIONS)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def one(body: bytes) -> None:
            async with session.post(endpoint, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"bare loop got HTTP {response.status}")

        async with asyncio.timeout(PHASE_LIMIT_S):
            for start in range(0, len(bodies), batch):
                await asyncio.gather(*(one(body) for body in bodies[start : start + batch]))


def sender_loop(sender: FcmSender, messages: list[PushMessage], batch: int) -> None:
    deadline = time.monotonic() + PHASE_LIMIT_S
    for start in range(0, len(messages), batch):
        results = sender.send(messages[start : start + batch])
        failed = [r for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"{len(failed)} sends failed, first: {failed[0]}")
        if time.monotonic() > deadline:
            raise RuntimeError("sender loop exceeded its time limit")


def run(messages: int, batch: int, rounds: int) -> Figures:
    load_before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory() as tmp,
        fcm_server_process(Path(tmp)) as (url, credentials, server_pid),
    ):
        load = pushes(messages)
        bodies = ready_bodies(load)
        token = access_token(credentials)
        raw_loop(url, token, bodies[:100])  # warm-up: imports, first connection
        raw = measure(messages, server_pid, lambda: raw_loop(url, token, bodies))
        requests_phase = measure(messages, server_pid, lambda: requests_loop(url, token, bodies))
        settings = FcmSettings(project_id=PROJECT, credentials_file=str(credentials), endpoint=url)
        bare_phases: list[Phase] = []
        fcm_phases: list[Phase] = []
        with FcmSender(settings, retry=NO_RETRY) as sender:
            sender_loop(sender, load[:batch], batch)  # warm-up: token, pool, first batch
            asyncio.run(bare_async(url, token, bodies[:batch], batch))
            for _ in range(rounds):
                bare_phases.append(
                    measure(
                        messages,
                        server_pid,
                        lambda: asyncio.run(bare_async(url, token, bodies, batch)),
                    )
                )
                fcm_phases.append(
                    measure(messages, server_pid, lambda: sender_loop(sender, load, batch))
                )
    return Figures(
        messages=messages,
        batch=batch,
        rounds=rounds,
        raw=raw,
        requests_loop=requests_phase,
        bare=median_phase(bare_phases),
        fcm=median_phase(fcm_phases),
        fcm_rounds=tuple(p.per_s for p in fcm_phases),
        load_before=load_before,
        load_after=os.getloadavg()[0],
    )


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} µs"


def _capacity(phase: Phase) -> str:
    capacity = phase.capacity_per_s
    return "n/a" if capacity is None else f"{capacity:,.0f} /s"


def report(figures: Figures) -> str:
    verdict = "meets" if figures.fcm.per_s >= TARGET_PUSHES_PER_S else "misses"
    rows = [
        ("raw http.client, one connection", figures.raw),
        ("requests keep-alive loop", figures.requests_loop),
        ("bare aiohttp, same pool (baseline)", figures.bare),
        ("FcmSender", figures.fcm),
    ]
    lines = [
        "| phase | sends/s | client CPU per send | server CPU per send | "
        "rate with a free core each |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {name} | {phase.per_s:,.0f} | {_us(phase.client_us)} | "
            f"{_us(phase.server_us)} | {_capacity(phase)} |"
            for name, phase in rows
        ),
    ]
    return "\n".join(
        [
            "## Run",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; load average {figures.load_before:.1f} "
            f"before, {figures.load_after:.1f} after.",
            f"{figures.messages} messages per phase, batches of {figures.batch} passed to "
            f"`send`, medians of {figures.rounds} alternating bare/FcmSender rounds "
            f"(FcmSender rounds: {', '.join(f'{r:,.0f}' for r in figures.fcm_rounds)} /s).",
            "",
            *lines,
            "",
            f"Ratio FcmSender / bare aiohttp: {figures.ratio:.2f}. "
            f"Target >= {TARGET_PUSHES_PER_S:,} /s: {verdict} as measured.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown run here")
    args = parser.parse_args()
    figures = run(args.messages, args.batch, args.rounds)
    text = report(figures)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
