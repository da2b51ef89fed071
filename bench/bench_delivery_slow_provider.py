"""Pushes to a slow provider: the in-flight limiter against the fixed pool it replaced.

The provider is `sandbox.slow.SlowProvider`, a socket server with a small listen backlog
that serves only a few connections at a time and answers each send after a delay,
counting deliveries per collapse key. Each phase gets a provider of its own, sends
`--messages` pushes to it (batches of 500, as FCM's send_each takes them, with the
production retry policy) and reports:

- wall time and sends/s (pushes delivered per second of the phase);
- duplicates: collapse keys the provider delivered more than once, and the extra copies;
- time-outs: requests that went out and got no answer in time (each a possible second
  copy when retried); other transient tries (connection failures, 503s; NOT_SENT: no
  slot before the send's deadline); pushes that failed for good;
- connections the provider accepted, and deliveries whose client had gone by the answer.

Phases, in one run:
- fixed: the previous transport's behaviour, as a bare aiohttp client with its settings
  (one pool of `POOL_CONNECTIONS` connections, a 10 s time-out counted from the request's
  start, so waiting for a connection counts, the batch's 500 requests started at once)
  and the previous retry policy (4 tries, 0.5-8 s backoff with jitter) over ready-made
  FCM bodies: the baseline. With `--baseline-root` (a checkout of the previous release,
  e.g. `git worktree add /tmp/vitrina-main main`), its own FcmSender runs as well, in a
  process of its own;
- fcm: `FcmSender.send` as deployed (the limiter, time-outs from the wire, DEFAULT_RETRY);
- webpush: `WebPushSender.deliver` (the same limiter, threads, encryption per push).

    .venv/bin/python -m bench.bench_delivery_slow_provider [--messages N] [--workers N]
        [--backlog N] [--delay S] [--keepalive-requests N] [--idle S]
        [--baseline-root PATH] [--skip-fixed] [--out PATH]

Target: no push delivered twice, every push delivered, and at least half the provider's
capacity (workers / delay) where the fixed pool makes a fraction of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.bench_delivery_fcm import LoopThread, pushes, ready_bodies
from cloud.channels.fcm import POOL_CONNECTIONS, FcmSender, FcmSettings, PushMessage
from cloud.channels.results import SendResult
from cloud.channels.retry import DEFAULT_RETRY, send_with_retries
from cloud.channels.vapid import b64url, generate_vapid_keys
from cloud.channels.web_push_service import WebPushMessage, WebPushSender, WebPushSubscription
from cloud.outbound import AllowList, OutboundPolicy
from sandbox.fcm import ServiceAccount
from sandbox.slow import SlowProvider

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "vitrina-bench"
#: The previous transport's settings: FcmSettings.timeout_s as aiohttp's total time-out.
OLD_TIMEOUT_S = 10.0
BATCH = 500
#: The bench stops itself: no phase may run longer than this.
PHASE_LIMIT_S = 600.0


@dataclass
class Outcome:
    """One phase: what the client saw and what the provider counted."""

    name: str
    messages: int
    seconds: float
    delivered: int = 0
    duplicates: int = 0
    extra_copies: int = 0
    timeouts: int = 0
    tries: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    accepted: int = 0
    unanswered: int = 0
    #: The longest a try was on the wire (ms; None: the phase does not measure it).
    slowest_ms: int | None = None
    note: str = ""

    @property
    def per_s(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


@dataclass
class Run:
    arguments: argparse.Namespace
    outcomes: list[Outcome] = field(default_factory=list)
    load_before: float = 0.0
    load_after: float = 0.0


def provider(args: argparse.Namespace) -> SlowProvider:
    return SlowProvider(
        workers=args.workers, backlog=args.backlog, delay_s=args.delay,
        keepalive_requests=args.keepalive_requests, idle_s=args.idle,
    )


def settle(outcome: Outcome, slow: SlowProvider, results: Sequence[SendResult]) -> Outcome:
    """Fill `outcome` from the provider's counts and the client's results."""
    time.sleep(0.2)  # a straggler written before the end is read by now
    duplicates = slow.duplicates()
    outcome.delivered = len(slow.deliveries)
    outcome.duplicates = len(duplicates)
    outcome.extra_copies = sum(count - 1 for count in duplicates.values())
    outcome.accepted = slow.accepted
    outcome.unanswered = slow.unanswered
    for result in results:
        for tried in result.history():
            if not tried.ok:
                outcome.tries[tried.error_code or "?"] += 1
            if tried.latency_ms is not None:
                outcome.slowest_ms = max(outcome.slowest_ms or 0, tried.latency_ms)
        outcome.failed += not result.ok
    outcome.timeouts = outcome.tries.pop("DEADLINE_EXCEEDED", 0)
    return outcome


def credentials(account: ServiceAccount, slow: SlowProvider, workdir: Path) -> Path:
    """A service account whose token endpoint is the slow provider (any assertion passes)."""
    path = workdir / f"sa-{slow.port}.json"
    path.write_text(json.dumps(account.info(f"{slow.url}/token")))
    return path


# -- the baseline: the fixed pool ----------------------------------------------------------


class FixedPool:
    """The previous transport's behaviour over ready-made bodies: one aiohttp pool of
    `POOL_CONNECTIONS`, a total time-out from each request's start (waiting for a
    connection included), every request of a batch started at once."""

    def __init__(self, url: str) -> None:
        self.endpoint = f"{url}/v1/projects/{PROJECT}/messages:send"
        self.headers = {"Authorization": "Bearer slow-token", "Content-Type": "application/json"}
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_CONNECTIONS),
            timeout=aiohttp.ClientTimeout(total=OLD_TIMEOUT_S),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def send(self, bodies: Sequence[bytes]) -> list[SendResult]:
        session = self.session
        assert session is not None

        async def one(body: bytes) -> SendResult:
            try:
                async with session.post(self.endpoint, data=body, headers=self.headers) as answer:
                    await answer.read()
                    if answer.status == 200:
                        return SendResult(token="", ok=True)
                    code = "UNAVAILABLE" if answer.status >= 500 else "INVALID_ARGUMENT"
                    return SendResult(token="", ok=False, error_code=code)
            except TimeoutError:
                return SendResult(token="", ok=False, error_code="DEADLINE_EXCEEDED")
            except aiohttp.ClientError:
                return SendResult(token="", ok=False, error_code="UNAVAILABLE")

        return list(await asyncio.gather(*(one(body) for body in bodies)))


def fixed_phase(args: argparse.Namespace, messages: list[PushMessage]) -> Outcome:
    bodies = ready_bodies(messages)
    loop = LoopThread()
    with provider(args) as slow:
        pool = FixedPool(slow.url)
        loop.run(pool.open())
        results: dict[int, SendResult] = {}
        started = time.monotonic()
        try:
            for start in range(0, len(bodies), BATCH):
                chunk = list(range(start, min(start + BATCH, len(bodies))))

                def send_once(pending: Sequence[int]) -> dict[int, SendResult]:
                    sent = loop.run(pool.send([bodies[i] for i in pending]))
                    return dict(zip(pending, sent, strict=True))

                results.update(send_with_retries(send_once, chunk, DEFAULT_RETRY))
            seconds = time.monotonic() - started
        finally:
            loop.run(pool.close())
            loop.close()
        return settle(Outcome("fixed", len(messages), seconds), slow, list(results.values()))


OLD_SENDER = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
from cloud.channels.fcm import FcmSender, FcmSettings, PushMessage
from cloud.channels.retry import DEFAULT_RETRY
url, credentials, count, project = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
pushes = [PushMessage(token="tok-%d" % i, title="20% off dryers", body="Only today",
                      idempotency_key="old-%d" % i) for i in range(count)]
settings = FcmSettings(project_id=project, credentials_file=credentials, endpoint=url)
with FcmSender(settings, retry=DEFAULT_RETRY) as sender:
    started = time.monotonic()
    results = []
    for start in range(0, count, 500):
        results += sender.send(pushes[start:start + 500])
    seconds = time.monotonic() - started
codes = {}
for r in results:
    if not r.ok:
        codes[r.error_code] = codes.get(r.error_code, 0) + 1
print(json.dumps({"seconds": seconds, "ok": sum(r.ok for r in results), "codes": codes}))
"""


def previous_sender_phase(
    args: argparse.Namespace, account: ServiceAccount, workdir: Path
) -> Outcome:
    """The previous release's own FcmSender, from `args.baseline_root`, in a process."""
    with provider(args) as slow:
        path = credentials(account, slow, workdir)
        finished = subprocess.run(
            [sys.executable, "-c", OLD_SENDER, slow.url, str(path), str(args.messages),
             PROJECT],
            cwd=args.baseline_root, env={**os.environ, "PYTHONPATH": str(args.baseline_root)},
            capture_output=True, text=True, timeout=PHASE_LIMIT_S, check=True,
        )
        report = json.loads(finished.stdout.strip().splitlines()[-1])
        outcome = settle(Outcome("previous FcmSender", args.messages, report["seconds"]),
                         slow, [])
        outcome.failed = args.messages - report["ok"]
        outcome.tries = Counter(report["codes"])
        outcome.timeouts = outcome.tries.pop("DEADLINE_EXCEEDED", 0)
        outcome.note = "final results only (that release kept no earlier tries)"
        return outcome


# -- the product ---------------------------------------------------------------------------


def fcm_phase(
    args: argparse.Namespace, account: ServiceAccount, workdir: Path,
    messages: list[PushMessage],
) -> Outcome:
    with provider(args) as slow:
        settings = FcmSettings(
            project_id=PROJECT, credentials_file=str(credentials(account, slow, workdir)),
            endpoint=slow.url,
        )
        results: list[SendResult] = []
        with FcmSender(settings, retry=DEFAULT_RETRY) as sender:
            started = time.monotonic()
            for start in range(0, len(messages), BATCH):
                results += sender.send(messages[start : start + BATCH])
            seconds = time.monotonic() - started
            limit = sender.limiter.limit(slow.url)
        outcome = settle(Outcome("fcm", len(messages), seconds), slow, results)
        outcome.note = f"limit at the end: {limit}"
        return outcome


def subscription(url: str, index: int) -> WebPushSubscription:
    """A browser's subscription (its keys made here; the provider decrypts nothing)."""
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return WebPushSubscription(
        endpoint=f"{url}/push/s{index}", p256dh=b64url(point),
        auth=b64url(os.urandom(16)),
    )


def web_push_phase(args: argparse.Namespace) -> Outcome:
    with provider(args) as slow:
        policy = OutboundPolicy(allow=AllowList.parse([f"127.0.0.1:{slow.port}"]))
        messages = [
            WebPushMessage(subscription=subscription(slow.url, i), title="20% off dryers",
                           body="Only today", idempotency_key=f"web-{i}")
            for i in range(args.messages)
        ]
        results: list[SendResult] = []
        with WebPushSender(generate_vapid_keys(), subject="mailto:ops@vitrina.example",
                           policy=policy, retry=DEFAULT_RETRY) as sender:
            started = time.monotonic()
            for start in range(0, len(messages), BATCH):
                results += sender.deliver(messages[start : start + BATCH])
            seconds = time.monotonic() - started
            limit = sender.limiter.limit(f"http://127.0.0.1:{slow.port}")
        outcome = settle(Outcome("webpush", len(messages), seconds), slow, results)
        outcome.note = f"limit at the end: {limit}"
        return outcome


# -- running and reporting -----------------------------------------------------------------


def run(args: argparse.Namespace) -> Run:
    warnings.filterwarnings("ignore", message=r"Message\.token is deprecated")
    figures = Run(args, load_before=os.getloadavg()[0])
    account = ServiceAccount.generate(PROJECT)
    messages = pushes(args.messages)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.skip_fixed:
            figures.outcomes.append(fixed_phase(args, messages))
            if args.baseline_root is not None:
                figures.outcomes.append(previous_sender_phase(args, account, workdir))
        figures.outcomes.append(fcm_phase(args, account, workdir, messages))
        if not args.skip_web_push:
            figures.outcomes.append(web_push_phase(args))
    figures.load_after = os.getloadavg()[0]
    return figures


NAMES = {
    "fixed": "fixed pool of 100, time-out from the request's start (baseline)",
    "previous FcmSender": "the previous release's FcmSender (fixed pool)",
    "fcm": "FcmSender, in-flight limiter",
    "webpush": "WebPushSender, in-flight limiter",
}


def report(figures: Run) -> str:
    args = figures.arguments
    capacity = args.workers / args.delay
    rows = []
    baseline = next((o for o in figures.outcomes if o.name == "fixed"), None)
    for o in figures.outcomes:
        ratio = f"{o.per_s / baseline.per_s:.1f}" if baseline and o is not baseline else ""
        other = ", ".join(f"{code} {n}" for code, n in sorted(o.tries.items())) or "none"
        slowest = "" if o.slowest_ms is None else f"{o.slowest_ms:,} ms"
        rows.append(
            f"| {NAMES.get(o.name, o.name)} | {o.seconds:,.1f} s | {o.per_s:,.1f} | {ratio} | "
            f"{o.delivered} of {o.messages} | {o.duplicates} ({o.extra_copies} extra) | "
            f"{o.timeouts} | {other} | {o.failed} | {slowest} | {o.accepted} | {o.unanswered} |"
        )
    notes = [f"- {NAMES.get(o.name, o.name)}: {o.note}" for o in figures.outcomes if o.note]
    clean = [o for o in figures.outcomes if o.name in ("fcm", "webpush")]
    meets = all(
        o.duplicates == 0 and o.delivered == o.messages and o.per_s >= capacity / 2
        for o in clean
    )
    return "\n".join([
        "## Run",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, aiohttp {aiohttp.__version__}; load average "
        f"{figures.load_before:.1f} before, {figures.load_after:.1f} after.",
        f"Provider: listen backlog {args.backlog}, {args.workers} connections served at a "
        f"time, answers after {args.delay * 1000:.0f} ms, a connection closed after "
        f"{args.keepalive_requests} requests or {args.idle:.0f} s idle: capacity "
        f"{capacity:,.0f} sends/s. {args.messages} pushes per phase, batches of {BATCH}, "
        "the production retry policy.",
        "",
        "| phase | wall time | delivered/s | ratio to baseline | delivered | delivered twice "
        "| time-outs | other failed tries | failed for good | slowest try on the wire "
        "| connections accepted | delivered after the client left |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        *notes,
        "",
        f"Target (no duplicates, all delivered, >= {capacity / 2:,.0f}/s): "
        f"{'meets' if meets else 'misses'}.",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8, help="connections served at once")
    parser.add_argument("--backlog", type=int, default=8, help="the provider's listen backlog")
    parser.add_argument("--delay", type=float, default=0.1, help="seconds per answer")
    parser.add_argument("--keepalive-requests", type=int, default=100)
    parser.add_argument("--idle", type=float, default=5.0, help="idle seconds before a close")
    parser.add_argument("--baseline-root", type=Path, default=None,
                        help="a checkout of the previous release, to run its FcmSender too")
    parser.add_argument("--skip-fixed", action="store_true", help="no baseline phases")
    parser.add_argument("--skip-web-push", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown run here")
    args = parser.parse_args(argv)
    text = report(run(args))
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
