"""Mobile push throughput: FcmSender (firebase-admin) against the local FCM server.

Starts the local FCM server as a process of its own (so it has a core of its own, as
Google's would), then in one run measures:
- bare: a keep-alive `requests.Session` POSTing a ready-made FCM v1 body in a loop,
  with an access token fetched once (the cheapest client that could send these pushes);
- fcm: one worker thread calling `FcmSender.send` on batches of messages (message
  building, firebase-admin's send_each fan-out, OAuth, result mapping included).
The ratio fcm/bare says what the SDK and our layer cost over the wire protocol.

    .venv/bin/python -m bench.bench_delivery_fcm [--messages N] [--batch N] [--out PATH]

Target: >= 2,000 pushes/s with one worker.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
from google.auth.transport import requests as auth_requests
from google.oauth2 import service_account

from cloud.delivery.dedupe import collapse_id
from cloud.delivery.fcm import FcmSender
from cloud.delivery.push import FcmSettings, PushMessage
from cloud.delivery.retry import NO_RETRY
from sandbox.fcm import make_token

TARGET_PUSHES_PER_S = 2_000
ROOT = Path(__file__).resolve().parent.parent
PROJECT = "vitrina-bench"
#: The bench stops itself: no phase may run longer than this.
PHASE_LIMIT_S = 120.0


@dataclass(frozen=True, slots=True)
class Figures:
    messages: int
    bare_per_s: float
    raw_per_s: float
    fcm_per_s: float
    batch: int

    @property
    def ratio(self) -> float:
        return self.fcm_per_s / self.bare_per_s


@contextlib.contextmanager
def fcm_server_process(workdir: Path) -> Iterator[tuple[str, Path]]:
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
        yield str(announced["url"]), credentials
    finally:
        process.terminate()
        process.wait(timeout=10)


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


def bare_loops(url: str, credentials: Path, messages: list[PushMessage]) -> tuple[float, float]:
    """Messages per second for a keep-alive requests POST loop, then for raw http.client."""
    scoped = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        str(credentials), scopes=["https://www.googleapis.com/auth/firebase.messaging"]
    )
    scoped.refresh(auth_requests.Request())
    endpoint = f"{url}/v1/projects/{PROJECT}/messages:send"
    bodies = [
        json.dumps(
            {
                "message": {
                    "token": m.token,
                    "notification": {"title": m.title, "body": m.body, "image": m.image_url},
                    "data": {
                        **m.data,
                        "deep_link": m.deep_link,
                        "dedupe_key": collapse_id(m.idempotency_key),
                    },
                }
            }
        )
        for m in messages
    ]
    headers = {"Authorization": f"Bearer {scoped.token}", "Content-Type": "application/json"}
    deadline = time.monotonic() + PHASE_LIMIT_S
    with requests.Session() as session:
        session.trust_env = False
        session.post(endpoint, data=bodies[0], headers=headers, timeout=10).raise_for_status()
        started = time.perf_counter()
        for body in bodies:
            session.post(endpoint, data=body, headers=headers, timeout=10).raise_for_status()
            if time.monotonic() > deadline:
                raise RuntimeError("bare loop exceeded its time limit")
        bare = len(bodies) / (time.perf_counter() - started)
    return bare, raw_loop(url, str(scoped.token), bodies)


def raw_loop(url: str, token: str, bodies: list[str]) -> float:
    """Messages per second for http.client on one connection: what the server can take."""
    parsed = urlsplit(url)
    path = f"/v1/projects/{PROJECT}/messages:send"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=10)
    try:
        started = time.perf_counter()
        for body in bodies:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"raw loop got HTTP {response.status}")
        return len(bodies) / (time.perf_counter() - started)
    finally:
        connection.close()


def sender_loop(url: str, credentials: Path, messages: list[PushMessage], batch: int) -> float:
    settings = FcmSettings(project_id=PROJECT, credentials_file=str(credentials), endpoint=url)
    with FcmSender(settings, retry=NO_RETRY) as sender:
        warm = sender.send(messages[:batch])
        if not all(r.ok for r in warm):
            raise RuntimeError(f"warm-up failed: {[r for r in warm if not r.ok][:3]}")
        deadline = time.monotonic() + PHASE_LIMIT_S
        started = time.perf_counter()
        for start in range(0, len(messages), batch):
            results = sender.send(messages[start : start + batch])
            failed = [r for r in results if not r.ok]
            if failed:
                raise RuntimeError(f"{len(failed)} sends failed, first: {failed[0]}")
            if time.monotonic() > deadline:
                raise RuntimeError("sender loop exceeded its time limit")
        return len(messages) / (time.perf_counter() - started)


def run(messages: int, batch: int) -> Figures:
    with tempfile.TemporaryDirectory() as tmp, fcm_server_process(Path(tmp)) as (url, credentials):
        load = pushes(messages)
        bare, raw = bare_loops(url, credentials, load)
        fcm = sender_loop(url, credentials, load, batch)
    return Figures(messages=messages, bare_per_s=bare, raw_per_s=raw, fcm_per_s=fcm, batch=batch)


def report(figures: Figures) -> str:
    verdict = "meets" if figures.fcm_per_s >= TARGET_PUSHES_PER_S else "misses"
    return "\n".join(
        [
            "# Delivery benchmarks",
            "",
            "## FCM push throughput (`bench/bench_delivery_fcm.py`)",
            "",
            "One worker thread calls `FcmSender.send` on batches of pushes (notification, image,",
            "deep link, Android and APNs options) against the local FCM v1 server running as a",
            "separate process; the baseline is a keep-alive `requests` POST loop of ready-made",
            "bodies against the same server in the same run.",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}.",
            "",
            "| measure | value |",
            "| --- | --- |",
            f"| messages per phase | {figures.messages} |",
            f"| batch passed to `send` | {figures.batch} |",
            f"| bare POST loop | {figures.bare_per_s:,.0f} /s |",
            f"| raw http.client loop, one connection | {figures.raw_per_s:,.0f} /s |",
            f"| FcmSender | {figures.fcm_per_s:,.0f} /s |",
            f"| ratio FcmSender / bare | {figures.ratio:.2f} |",
            f"| target | >= {TARGET_PUSHES_PER_S:,} /s ({verdict}) |",
            "",
            "Reading the figures: every FCM v1 send is one HTTP/1.1 request, and",
            "firebase-admin's synchronous path goes through requests/urllib3 plus",
            "google-auth's AuthorizedSession. The bare requests loop reaches",
            f"{figures.bare_per_s / figures.raw_per_s:.0%} of the raw http.client loop, so the",
            "client library's per-request CPU, not the wire or the server, sets the ceiling;",
            "send_each's thread fan-out cannot beat the GIL. The sender's own layer (message",
            f"building, OAuth, result mapping) keeps {figures.ratio:.0%} of the bare loop.",
            "Capacity grows by adding workers (processes), which the orchestrator's shared",
            "MQTT subscription is built for; on this 2-core machine the local server shares",
            "the cores with the client.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = parser.parse_args()
    figures = run(args.messages, args.batch)
    text = report(figures)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
