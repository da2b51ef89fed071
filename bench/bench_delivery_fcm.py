"""Mobile push throughput: ways of sending FCM pushes, against the local FCM server.

Starts the local FCM server as a process of its own (it stands in for Google, so it gets
its own process, as Google would have its own machines), then measures in one run:
- raw: http.client on one connection, ready-made bodies: what the server takes from the
  simplest client (a reference for the server, not for the senders);
- bare: aiohttp POSTing ready-made FCM v1 bodies, 500 at a time over the sender's pool
  size, with an access token fetched once: the cheapest client that could send these
  pushes (no SDK, no message building). The baseline of the ratios;
- sdk: firebase-admin's public `messaging.send_each_async` as it ships, with its own
  httpx client (HTTP/2 enabled, which over plain http:// means HTTP/1.1), its
  per-request credential flow and its retries; the only change is the URL it posts to
  (the SDK hard-codes Google's), made in this bench alone;
- fcm: `FcmSender.send` (the product: send_each_async through our aiohttp client).
Each is given batches of 500 built pushes (message building included, except for raw and
bare). The bare, sdk and fcm phases alternate for a few rounds; medians are reported.

With nginx installed (`--tls`, the default when it is found), the same is measured over
TLS through an nginx front that speaks HTTP/2 (as Google does) to the clients and
HTTP/1.1 to the local server: sdk over TLS negotiates HTTP/2 (ALPN), fcm over TLS is
HTTP/1.1. nginx's CPU is counted with the server's.

Then `--workers N` (default 2) sending processes run fcm (and sdk) at once: the rate of a
deployment of N workers, on this machine shared with the server.

Beside the rates it reports CPU time per send in the client process and in the server
process(es) (from /proc): on a shared machine the rates move with everyone else's load,
the CPU cost per send much less, and min(clients * 1e6 / client µs, 1e6 / server µs) is the
rate they would reach with a free core for each process.

    .venv/bin/python -m bench.bench_delivery_fcm [--messages N] [--batch N] [--rounds N]
        [--workers N] [--no-tls] [--out PATH]

Target: >= 2,000 pushes/s per deployment of two workers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import multiprocessing
import os
import platform
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import firebase_admin
from firebase_admin import credentials as firebase_credentials
from firebase_admin import messaging
from google.auth.transport import requests as auth_requests
from google.oauth2 import service_account

from cloud.channels import fcm_sdk
from cloud.channels.fcm import POOL_CONNECTIONS, FcmSender, FcmSettings, PushMessage, build_message
from cloud.channels.retry import NO_RETRY
from sandbox.fcm import make_token
from sandbox.smtp import free_port, self_signed_certificate

TARGET_PUSHES_PER_S = 2_000
ROOT = Path(__file__).resolve().parent.parent
PROJECT = "vitrina-bench"
#: The bench stops itself: no phase may run longer than this.
PHASE_LIMIT_S = 120.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Phase:
    """One measured phase: sends per second and CPU µs per send on each side."""

    per_s: float
    client_us: float
    server_us: float | None
    #: Sending processes (each with its own core in `capacity_per_s`).
    clients: int = 1

    @property
    def capacity_per_s(self) -> float | None:
        """The rate with a free core for each client process and one for the server."""
        if self.server_us is None:
            return None
        return min(self.clients * 1e6 / self.client_us, 1e6 / self.server_us)


@dataclass
class Figures:
    messages: int
    batch: int
    rounds: int
    workers: int
    phases: dict[str, Phase] = field(default_factory=dict)
    rounds_per_s: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    load_before: float = 0.0
    load_after: float = 0.0


def process_cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds of a process (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def servers_cpu_s(pids: list[int]) -> float | None:
    each = [process_cpu_s(pid) for pid in pids]
    return None if None in each else sum(cpu or 0.0 for cpu in each)


def per_send_us(before: float | None, after: float | None, count: int) -> float | None:
    return None if before is None or after is None else (after - before) / count * 1e6


def measure(count: int, server_pids: list[int], run: Callable[[], None]) -> Phase:
    server_before = servers_cpu_s(server_pids)
    cpu_before = time.process_time()
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    client_us = (time.process_time() - cpu_before) / count * 1e6
    server_us = per_send_us(server_before, servers_cpu_s(server_pids), count)
    return Phase(per_s=count / elapsed, client_us=client_us, server_us=server_us)


def median_phase(phases: list[Phase]) -> Phase:
    servers = [p.server_us for p in phases if p.server_us is not None]
    return Phase(
        per_s=statistics.median(p.per_s for p in phases),
        client_us=statistics.median(p.client_us for p in phases),
        server_us=statistics.median(servers) if servers else None,
    )


@contextlib.contextmanager
def fcm_server_process(workdir: Path, server_root: Path = ROOT) -> Iterator[tuple[str, Path, int]]:
    """The local FCM server in a process of its own, from `server_root` (another checkout,
    to compare versions of the server)."""
    credentials = workdir / "service-account.json"
    environment = {**os.environ, "PYTHONPATH": str(server_root)}
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "sandbox.fcm", "--port", "0", "--project", PROJECT),
            *("--credentials-out", str(credentials)),
        ],
        cwd=server_root,
        env=environment,
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


NGINX_CONF = """
daemon off; master_process off; worker_processes 1;
pid {tmp}/nginx.pid; error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    http2_max_concurrent_streams 128;
    upstream sandbox {{ server {upstream}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://sandbox;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


@contextlib.contextmanager
def tls_front(upstream_url: str, workdir: Path) -> Iterator[tuple[str, Path, int]]:
    """nginx terminating TLS (HTTP/2 or HTTP/1.1 by ALPN) in front of the local server;
    yields its URL, the CA file to trust and nginx's pid."""
    cert, key = self_signed_certificate(workdir)
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            tmp=workdir, upstream=urlsplit(upstream_url).netloc, port=port, cert=cert, key=key
        )
    )
    process = subprocess.Popen(["nginx", "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("nginx did not start")
            time.sleep(0.05)
        yield f"https://127.0.0.1:{port}", cert, process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


def pushes(count: int, prefix: str = "bench") -> list[PushMessage]:
    return [
        PushMessage(
            token=make_token(),
            title="20% off dryers",
            body="Only today, in the store you are passing",
            idempotency_key=f"{prefix}-{index}",
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
    return [
        json.dumps(
            {"message": fcm_sdk.encode_message(build_message(m))}, separators=(",", ":")
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


class LoopThread:
    """A persistent event loop in a thread: the SDK's and aiohttp's pools stay warm."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(PHASE_LIMIT_S)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Bare:
    """aiohttp, `batch` requests at a time over a pool of the sender's size."""

    def __init__(self, url: str, token: str, ca_file: Path | None) -> None:
        self.endpoint = f"{url}/v1/projects/{PROJECT}/messages:send"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.ca_file = ca_file
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_CONNECTIONS, ssl=context or True),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def send(self, bodies: list[bytes], batch: int) -> None:
        session = self.session
        assert session is not None

        async def one(body: bytes) -> None:
            async with session.post(self.endpoint, data=body, headers=self.headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"bare loop got HTTP {response.status}")

        for start in range(0, len(bodies), batch):
            await asyncio.gather(*(one(body) for body in bodies[start : start + batch]))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


def shipped_app(credentials: Path, url: str, name: str) -> firebase_admin.App:
    """An App whose messaging service is firebase-admin's own, as shipped, except the URL
    it posts to (hard-coded to Google's: bench-only, hence the private attribute)."""
    app = firebase_admin.initialize_app(
        firebase_credentials.Certificate(str(credentials)),
        options={"projectId": PROJECT, "httpTimeout": 10},
        name=name,
    )
    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{url}/v1/projects/{PROJECT}/messages:send"
    return app


async def shipped_send(app: firebase_admin.App, messages: list[PushMessage], batch: int) -> None:
    for start in range(0, len(messages), batch):
        built = [build_message(m) for m in messages[start : start + batch]]
        response = await messaging.send_each_async(built, app=app)
        if response.failure_count:
            failed = next(r for r in response.responses if not r.success)
            raise RuntimeError(f"{response.failure_count} SDK sends failed: {failed.exception}")


def sender_loop(sender: FcmSender, messages: list[PushMessage], batch: int) -> None:
    deadline = time.monotonic() + PHASE_LIMIT_S
    for start in range(0, len(messages), batch):
        results = sender.send(messages[start : start + batch])
        failed = [r for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"{len(failed)} sends failed, first: {failed[0]}")
        if time.monotonic() > deadline:
            raise RuntimeError("sender loop exceeded its time limit")


def compare(
    figures: Figures,
    label: str,
    url: str,
    credentials: Path,
    server_pids: list[int],
    ca_file: Path | None,
) -> None:
    """Alternating rounds of bare, sdk and fcm against `url`; medians into `figures`."""
    count, batch = figures.messages, figures.batch
    load = pushes(count)
    bodies = ready_bodies(load)
    loop = LoopThread()
    bare = Bare(url, access_token(credentials), ca_file)
    app = shipped_app(credentials, url, f"bench-shipped-{label}")
    settings = FcmSettings(project_id=PROJECT, credentials_file=str(credentials), endpoint=url)
    runs: dict[str, list[Phase]] = {"bare": [], "sdk": [], "fcm": []}
    try:
        loop.run(bare.open())
        with FcmSender(settings, retry=NO_RETRY) as sender:
            # Warm-up: tokens, pools, first batches.
            loop.run(bare.send(bodies[:batch], batch))
            loop.run(shipped_send(app, load[:batch], batch))
            sender_loop(sender, load[:batch], batch)
            for _ in range(figures.rounds):
                runs["bare"].append(
                    measure(count, server_pids, lambda: loop.run(bare.send(bodies, batch)))
                )
                runs["sdk"].append(
                    measure(count, server_pids, lambda: loop.run(shipped_send(app, load, batch)))
                )
                runs["fcm"].append(
                    measure(count, server_pids, lambda: sender_loop(sender, load, batch))
                )
    finally:
        loop.run(bare.close())
        with contextlib.suppress(Exception):
            loop.run(messaging._get_messaging_service(app)._async_client.aclose())
        loop.close()
        firebase_admin.delete_app(app)
    for name, phases in runs.items():
        figures.phases[f"{name}{label}"] = median_phase(phases)
        figures.rounds_per_s[f"{name}{label}"] = [p.per_s for p in phases]


def worker_process(
    variant: str, url: str, credentials: str, count: int, batch: int, index: int, start: Any,
    results: Any,
) -> None:  # fmt: skip
    """One sending process of a deployment: warm up, wait for the others, send `count`."""
    load = pushes(count, prefix=f"w{index}")
    warnings.filterwarnings("ignore", message=r"Message\.token is deprecated")
    cpu_before = 0.0
    if variant == "fcm":
        settings = FcmSettings(project_id=PROJECT, credentials_file=credentials, endpoint=url)
        with FcmSender(settings, retry=NO_RETRY) as sender:
            sender_loop(sender, load[:batch], batch)
            start.wait()
            cpu_before, began = time.process_time(), time.monotonic()
            sender_loop(sender, load, batch)
            ended = time.monotonic()
    else:
        loop = LoopThread()
        app = shipped_app(Path(credentials), url, f"bench-worker-{index}")
        loop.run(shipped_send(app, load[:batch], batch))
        start.wait()
        cpu_before, began = time.process_time(), time.monotonic()
        loop.run(shipped_send(app, load, batch))
        ended = time.monotonic()
    results.put((began, ended, time.process_time() - cpu_before))


def deployment(
    figures: Figures, variant: str, url: str, credentials: Path, server_pids: list[int]
) -> None:
    """`figures.workers` processes sending at once; the deployment's rate."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    count = figures.messages
    processes = [
        context.Process(
            target=worker_process,
            args=(variant, url, str(credentials), count, figures.batch, i, start, results),
        )
        for i in range(figures.workers)
    ]
    for process in processes:
        process.start()
    time.sleep(8)  # imports, warm-up batch
    server_before = servers_cpu_s(server_pids)
    start.set()
    outcomes = [results.get(timeout=PHASE_LIMIT_S) for _ in processes]
    server_after = servers_cpu_s(server_pids)
    for process in processes:
        process.join(timeout=30)
    total = count * figures.workers
    elapsed = max(o[1] for o in outcomes) - min(o[0] for o in outcomes)
    client_us = sum(o[2] for o in outcomes) / total * 1e6
    server_us = per_send_us(server_before, server_after, total)
    figures.phases[f"{variant} x{figures.workers}"] = Phase(
        total / elapsed, client_us, server_us, clients=figures.workers
    )


def run(
    messages: int, batch: int, rounds: int, workers: int, tls: bool, server_root: Path
) -> Figures:
    # Every variant sends registration tokens; the SDK's per-message deprecation warning
    # is silenced for all of them (FcmSender does so itself).
    warnings.filterwarnings("ignore", message=r"Message\.token is deprecated")
    figures = Figures(messages, batch, rounds, workers, load_before=os.getloadavg()[0])
    with (
        tempfile.TemporaryDirectory() as tmp,
        fcm_server_process(Path(tmp), server_root) as (url, credentials, server_pid),
    ):
        if server_root != ROOT:
            figures.notes.append(f"The local server ran from {server_root}.")
        token = access_token(credentials)
        bodies = ready_bodies(pushes(messages))
        raw_loop(url, token, bodies[:100])  # warm-up: imports, first connection
        raw = measure(messages, [server_pid], lambda: raw_loop(url, token, bodies))
        figures.phases["raw"] = raw
        compare(figures, "", url, credentials, [server_pid], None)
        if workers > 1:
            deployment(figures, "fcm", url, credentials, [server_pid])
            deployment(figures, "sdk", url, credentials, [server_pid])
        if tls and shutil.which("nginx"):
            workdir = Path(tmp) / "tls"
            workdir.mkdir()
            with tls_front(url, workdir) as (tls_url, ca_file, nginx_pid):
                os.environ["SSL_CERT_FILE"] = str(ca_file)  # the SDK's httpx trusts this
                os.environ["REQUESTS_CA_BUNDLE"] = str(ca_file)  # FcmSender's CA bundle
                compare(figures, " tls", tls_url, credentials, [server_pid, nginx_pid], ca_file)
        elif tls:
            figures.notes.append("nginx not found: the TLS / HTTP/2 phases were skipped.")
    figures.load_after = os.getloadavg()[0]
    return figures


NAMES = {
    "raw": "raw http.client, one connection (server reference)",
    "bare": "bare aiohttp, ready bodies (baseline)",
    "sdk": "firebase-admin send_each_async as shipped (httpx, HTTP/1.1)",
    "fcm": "FcmSender (send_each_async through aiohttp)",
    "bare tls": "bare aiohttp over TLS (HTTP/1.1)",
    "sdk tls": "send_each_async as shipped over TLS (HTTP/2)",
    "fcm tls": "FcmSender over TLS (HTTP/1.1)",
}


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} µs"


def _capacity(phase: Phase) -> str:
    capacity = phase.capacity_per_s
    return "n/a" if capacity is None else f"{capacity:,.0f} /s"


def _ratio(figures: Figures, name: str) -> str:
    baseline = figures.phases.get("bare tls" if name.endswith("tls") else "bare")
    phase = figures.phases[name]
    if baseline is None or name in ("raw", "bare", "bare tls") or " x" in name:
        return ""
    return f"{phase.per_s / baseline.per_s:.2f}"


def report(figures: Figures) -> str:
    rows = [
        f"| {NAMES.get(name, f'{name} processes at once')} | {phase.per_s:,.0f} | "
        f"{_ratio(figures, name)} | {_us(phase.client_us)} | {_us(phase.server_us)} | "
        f"{_capacity(phase)} |"
        for name, phase in figures.phases.items()
    ]
    rounds = "; ".join(
        f"{name}: {', '.join(f'{r:,.0f}' for r in values)}"
        for name, values in figures.rounds_per_s.items()
    )
    rate = figures.phases.get(f"fcm x{figures.workers}")
    verdict = "n/a" if rate is None else "meets" if rate.per_s >= TARGET_PUSHES_PER_S else "misses"
    return "\n".join(
        [
            "## Run",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, firebase-admin {firebase_admin.__version__}, "
            f"aiohttp {aiohttp.__version__}; load average {figures.load_before:.1f} before, "
            f"{figures.load_after:.1f} after.",
            f"{figures.messages} messages per phase (per process with several), batches of "
            f"{figures.batch}, medians of {figures.rounds} alternating rounds "
            f"(rounds, sends/s: {rounds}).",
            "",
            "| phase | sends/s | ratio to bare | client CPU per send | server CPU per send | "
            "rate with a free core each |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            *figures.notes,
            f"Target >= {TARGET_PUSHES_PER_S:,} /s with {figures.workers} FcmSender "
            f"processes: {verdict} as measured.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-tls", action="store_true", help="skip the nginx TLS phases")
    parser.add_argument(
        "--server-root", type=Path, default=ROOT, help="run sandbox.fcm from this checkout"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the markdown run here")
    args = parser.parse_args()
    figures = run(
        args.messages, args.batch, args.rounds, args.workers, not args.no_tls, args.server_root
    )
    text = report(figures)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
