"""How many requests a sender keeps in flight to one provider host, adapted to how the
host answers; shared by the push senders (FCM on an event loop, Web Push in threads).

A provider that answers slowly, or accepts only a few connections at a time, is hurt by a
client that opens a hundred connections at once: most requests then wait (in the
provider's accept queue, for a connection, for a worker) until their time-out, and a
request that times out after it was written may still be delivered, so its retry is a
second copy. The limiter keeps the number of requests in flight to a host near what the
host can take, in the manner of TCP's congestion window (AIMD with a delay signal, as
Netflix's concurrency-limits does for servers):

- it starts at `LimitSettings.initial` and grows by one per round trip while the host's
  latency holds: the request that fills the limit (the one that needs a new connection,
  if any does) is the probe, and once it has its answer in time the limit grows by one,
  and the next request to fill it is the next probe. (Growing sooner overshoots: a
  request written on a connection the host has not accepted yet shows nothing until it
  is late, and others would follow it.)
- latency "holds" while an answer takes at most `tolerance` times the host's baseline
  (the shortest answer of the last `baseline_window_s` to 2x that) plus `slack_s`, and
  never more than `ceiling_s`, kept well below the time-out;
- an answer slower than that shrinks the limit by `latency_backoff` (by `backoff` past
  `ceiling_s`);
- a request unanswered past that threshold (and past `stuck_factor` times the recent
  answers' latency) is "stuck": most likely written on a new connection that waits in
  the host's accept queue behind the connections the host serves. The limit shrinks to
  the requests the host does serve, so that no new connection follows, and does not grow
  while one is stuck; and a connection the host serves is given back for it: the next
  request (one more than the limit if need be, one at a time) starts with
  `Permit.close_connection`, to be sent with `Connection: close`, so that the host,
  closing that connection after its answer, takes the stuck one in. The last request of
  a send closes its connection too where requests got stuck lately (the last few where
  they do often): one stuck behind them would otherwise wait until the host closed the
  connections left idle;
- a time-out, a refused or broken connection, or a 429/502/503/504 shrinks it by
  `backoff`, and a Retry-After holds the host: no request starts there before it (up to
  `max_hold_s`; a send waits for at most `hold_wait_s` of it, what would wait longer is
  not sent and goes back to the queue).

A limit shrinks at most once per round trip: requests started before the last back-off
do not shrink it again.

Waiting for a permit is not part of a request's time-out: a sender starts the clock when
the request goes out. What bounds the wait is the send's deadline (`send_deadline`): a
request that gets no permit before it is not sent at all (`NotSentError`), and goes back
to the queue, which is safe, as nothing reached the provider. The delivery worker sets
the deadline to half its lease (`sending_until`), so that a send never outlives the claim
on its messages (a claim that lapses is another worker's to send again).

The state is per key (a provider's scheme, host and port), per process: several workers
each keep their own limit and, like TCP flows, settle on shares of the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

#: How long a send may take when its caller set no deadline (`sending_until`).
DEFAULT_SEND_BUDGET_S = 120.0
#: Requests in flight to a host before anything is known about it.
INITIAL_LIMIT = 4
#: The weight of each answer in the moving average of recent latency.
RECENT_WEIGHT = 0.1
#: Requests get stuck at a host "often" when new episodes came with more than this share
#: of the last STUCK_MEMORY requests (a fast host's rare straggler does not count).
STUCK_MEMORY = 200
STUCK_OFTEN = 0.01
#: ... and "lately" when the last episode came within this many requests.
STUCK_LATELY = 5000


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """The limiter's constants (module docstring)."""

    initial: int = INITIAL_LIMIT
    minimum: int = 1
    maximum: int = 100
    tolerance: float = 2.0
    slack_s: float = 0.05
    ceiling_s: float = 2.5
    latency_backoff: float = 0.9
    backoff: float = 0.5
    baseline_window_s: float = 10.0
    #: A request in flight is stuck past the latency threshold and this many times the
    #: recent answers' latency.
    stuck_factor: float = 3.0
    #: The longest a Retry-After holds a host (0: Retry-After holds nothing here; each
    #: message still waits its own in the queue).
    max_hold_s: float = 60.0
    #: The longest a request waits for a hold to end; a longer one is not waited for
    #: (NotSentError), as the retry policy does not sleep through a long Retry-After.
    hold_wait_s: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.initial <= self.maximum:
            raise ValueError("need 1 <= minimum <= initial <= maximum")
        if not (0 < self.backoff < 1 and 0 < self.latency_backoff < 1):
            raise ValueError("back-off factors must be within (0, 1)")
        if self.max_hold_s < 0 or self.hold_wait_s < 0:
            raise ValueError("hold times must not be negative")

    @classmethod
    def for_timeout(cls, timeout_s: float, *, maximum: int) -> LimitSettings:
        """Settings for a sender whose requests time out after `timeout_s` on the wire:
        latency may never grow past a quarter of it."""
        return cls(maximum=maximum, initial=min(INITIAL_LIMIT, maximum),
                   ceiling_s=max(timeout_s / 4, 0.01))


class Signal(enum.Enum):
    """What an answer says about the host's load."""

    #: An answer (any status but the overload ones): its latency is a sample.
    ANSWER = "answer"
    #: Time-out, refused or broken connection, 429, 502, 503, 504: back off.
    OVERLOAD = "overload"
    #: Nothing about the host (the request was refused locally): no sample.
    NONE = "none"


#: HTTP statuses that mean the host is overloaded (or says it is).
OVERLOAD_STATUSES = frozenset({429, 502, 503, 504})


def signal_for_status(status: int) -> Signal:
    return Signal.OVERLOAD if status in OVERLOAD_STATUSES else Signal.ANSWER


class NotSentError(Exception):
    """No permit before the send's deadline: the request was not sent. `retry_after_s`:
    how long the host is still held by a Retry-After (None if it is not)."""

    def __init__(self, key: str, retry_after_s: float | None) -> None:
        held = f", held for {retry_after_s:.1f}s more" if retry_after_s else ""
        super().__init__(f"not sent to {key}: no free slot before the send's deadline{held}")
        self.key = key
        self.retry_after_s = retry_after_s


def host_key(url: str) -> str:
    """The key requests to `url` are limited under: scheme, host and port."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"


# -- deadlines ----------------------------------------------------------------------------

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "vitrina_send_deadline", default=None
)


@contextlib.contextmanager
def sending_until(deadline: float) -> Iterator[None]:
    """Sends made inside start no request after `deadline` (time.monotonic())."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def send_deadline(budget_s: float = DEFAULT_SEND_BUDGET_S) -> float:
    """The deadline of a send starting now: the caller's (`sending_until`), or `budget_s`
    from now."""
    return _DEADLINE.get() or time.monotonic() + budget_s


# -- the limiter --------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Permit:
    """Leave to send one request to `key`; release it with the answer's signal."""

    key: str
    #: The host's permits are numbered in the order they were granted.
    seq: int
    granted_at: float
    epoch: int
    #: Send the request with `Connection: close`: a request is stuck in the host's
    #: queue, and the host will take it in once this connection closes.
    close_connection: bool = False


class _Waiter:
    __slots__ = ("permit", "wake")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.permit: Permit | None = None
        self.wake = wake


class _Host:
    """One key's state (guarded by the limiter's lock)."""

    __slots__ = ("bucket_min", "bucket_start", "closing", "epoch", "granted", "held_until",
                 "limit", "outstanding", "previous_min", "probe", "recent", "stuck_after",
                 "stuck_episode", "stuck_share", "threshold", "waiters")

    def __init__(self, initial: int, threshold: float) -> None:
        self.limit = float(initial)
        #: Bumped at every back-off; a permit from an earlier epoch cannot back off again.
        self.epoch = 0
        #: Permits granted so far, and the one whose answer in time grows the limit (None:
        #: the next to fill the limit).
        self.granted = 0
        self.probe: int | None = None
        #: Permits in flight by number, oldest first: when each was granted, its epoch,
        #: whether it closes its connection.
        self.outstanding: OrderedDict[int, tuple[float, int, bool]] = OrderedDict()
        #: Permits in flight that close their connection (for stuck requests), and how
        #: often requests were found stuck lately (a moving average over grants).
        self.closing = 0
        self.stuck_share = 0.0
        #: The number of the permit granted when requests were last found stuck.
        self.stuck_episode = -STUCK_MEMORY * 100
        self.waiters: deque[_Waiter] = deque()
        self.held_until = 0.0
        #: Latency past which an answer is slow; the answers' recent latency (a moving
        #: average); and the age past which a request in flight is stuck.
        self.threshold = threshold
        self.recent: float | None = None
        self.stuck_after = threshold
        self.bucket_start = -math.inf
        self.bucket_min = math.inf
        self.previous_min = math.inf

    def cap(self, settings: LimitSettings) -> int:
        return max(settings.minimum, int(self.limit))


class InflightLimiter:
    """Adaptive in-flight limits per key (module docstring). Thread-safe: `acquire` is
    awaited on an event loop, `acquire_blocking` called from threads, `release` from
    either."""

    def __init__(
        self, settings: LimitSettings | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings or LimitSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}

    # -- reading ------------------------------------------------------------------------

    def limit(self, key: str) -> int:
        """The number of requests `key` may have in flight now."""
        with self._lock:
            return self._host(key).cap(self.settings)

    def in_flight(self, key: str) -> int:
        with self._lock:
            return len(self._host(key).outstanding)

    def held_for(self, key: str) -> float:
        """Seconds until `key` may be sent to again after a Retry-After (0: not held)."""
        with self._lock:
            return max(0.0, self._host(key).held_until - self._clock())

    # -- acquiring ----------------------------------------------------------------------

    def try_acquire(self, key: str, *, behind: int = 0) -> Permit | None:
        """A permit if one is free now and nobody waits for it before us, else None.
        `behind`: how many more requests for `key` the caller has waiting behind this one."""
        with self._lock:
            host = self._host(key)
            now = self._clock()
            if host.waiters or not self._free(host, now):
                return None
            return self._grant(key, host, now, behind=behind)

    async def acquire(self, key: str, *, deadline: float) -> Permit:
        """A permit for `key`, waiting in turn; raises NotSentError at `deadline`."""
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        woken: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        def schedule_wake() -> None:
            # A release on the loop's own thread (the usual case) needs no self-pipe write.
            if threading.get_ident() == loop_thread:
                loop.call_soon(wake)
            else:
                loop.call_soon_threadsafe(wake)

        waiter = _Waiter(schedule_wake)
        permit, pause = self._enter(key, waiter, deadline)
        while permit is None:
            timer = loop.call_later(pause, wake)  # the hold's end, or the deadline
            try:
                await woken
            except BaseException:  # cancelled: out of the queue, or the permit back
                self._leave(key, waiter)
                raise
            finally:
                timer.cancel()
            woken = loop.create_future()
            permit, pause = self._again(key, waiter, deadline)
        return permit

    def acquire_blocking(self, key: str, *, deadline: float) -> Permit:
        """`acquire` for threads."""
        woken = threading.Event()
        waiter = _Waiter(woken.set)
        permit, pause = self._enter(key, waiter, deadline)
        while permit is None:
            woken.wait(pause)
            woken.clear()
            permit, pause = self._again(key, waiter, deadline)
        return permit

    def _enter(self, key: str, waiter: _Waiter, deadline: float) -> tuple[Permit | None, float]:
        with self._lock:
            host = self._host(key)
            now = self._clock()
            self._refuse_past(key, host, now, deadline)
            if not host.waiters and self._free(host, now):
                # Who comes after is not known yet (a batch's requests ask one by one).
                return self._grant(key, host, now, behind=None), 0.0
            host.waiters.append(waiter)
            return None, self._pause(host, now, deadline)

    def _again(self, key: str, waiter: _Waiter, deadline: float) -> tuple[Permit | None, float]:
        """After a wake or a pause: the permit granted meanwhile, else wait on (or give up
        at the deadline)."""
        woken: list[_Waiter] = []
        with self._lock:
            host = self._host(key)
            now = self._clock()
            if waiter.permit is None:
                woken = self._hand_out(key, host, now)  # a hold may have ended
            if waiter.permit is not None:
                permit = waiter.permit
            else:
                try:
                    self._refuse_past(key, host, now, deadline)
                except NotSentError:
                    host.waiters.remove(waiter)
                    raise
                permit = None
        self._wake(w for w in woken if w is not waiter)
        return permit, (0.0 if permit else self._pause_unlocked(key, deadline))

    def _leave(self, key: str, waiter: _Waiter) -> None:
        """A waiter gave up (cancelled): out of the queue, or its permit back."""
        with self._lock:
            host = self._host(key)
            if waiter.permit is None:
                host.waiters.remove(waiter)
                return
        self.release(waiter.permit, Signal.NONE)

    # -- releasing ----------------------------------------------------------------------

    def release(
        self, permit: Permit, signal: Signal, *, latency_s: float | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        """The request under `permit` is over; `signal` and `latency_s` (from when it went
        out to its answer) adapt the limit, `retry_after_s` holds the host."""
        with self._lock:
            host = self._host(permit.key)
            host.outstanding.pop(permit.seq, None)
            if permit.close_connection:
                host.closing -= 1
            now = self._clock()
            probe, host.probe = host.probe == permit.seq, (
                None if host.probe == permit.seq else host.probe
            )
            if signal is Signal.ANSWER and latency_s is not None:
                self._sample(host, permit, latency_s, now, probe=probe)
            elif signal is Signal.OVERLOAD:
                self._back_off(host, permit.epoch, self.settings.backoff)
            if retry_after_s is not None and retry_after_s > 0 and self.settings.max_hold_s:
                hold = min(retry_after_s, self.settings.max_hold_s)
                host.held_until = max(host.held_until, now + hold)
            woken = self._hand_out(permit.key, host, now)
        self._wake(woken)

    # -- the algorithm (callers hold the lock) --------------------------------------------

    def _sample(self, host: _Host, permit: Permit, latency_s: float, now: float, *,
                probe: bool) -> None:
        settings = self.settings
        window = settings.baseline_window_s
        if now - host.bucket_start >= window:
            recent = now - host.bucket_start < 2 * window
            host.previous_min = host.bucket_min if recent else math.inf
            host.bucket_min, host.bucket_start = math.inf, now
        host.bucket_min = min(host.bucket_min, latency_s)
        baseline = min(host.bucket_min, host.previous_min)
        host.threshold = min(baseline * settings.tolerance + settings.slack_s,
                             settings.ceiling_s)
        host.recent = latency_s if host.recent is None else (
            host.recent + RECENT_WEIGHT * (latency_s - host.recent)
        )
        host.stuck_after = min(max(host.threshold, settings.stuck_factor * host.recent),
                               settings.ceiling_s)
        if latency_s > host.threshold:
            late = latency_s >= settings.ceiling_s
            self._back_off(host, permit.epoch,
                           settings.backoff if late else settings.latency_backoff)
            return
        if self._stuck(host, now, answered=1)[0] or not probe:
            return  # full, whatever this answer says; or not the request at the limit
        host.limit = min(host.limit + 1.0, float(settings.maximum))

    def _stuck(self, host: _Host, now: float, *, answered: int = 0) -> tuple[int, int]:
        """Requests in flight longer than the threshold (and than `stuck_factor` times the
        recent answers: under a load that slows every answer, a request as slow as its
        peers is not stuck), and how many of those close their connection. The first to
        be stuck in an epoch backs the limit off, to no more than the requests the host
        is serving (those not stuck, and the `answered` one whose release is asking)."""
        stuck = closing = 0
        first_epoch = -1
        for granted_at, epoch, close in host.outstanding.values():  # oldest first
            if now - granted_at <= host.stuck_after:
                break
            if not stuck:
                first_epoch = epoch
            stuck += 1
            closing += close
        if stuck:
            if first_epoch == host.epoch:  # news: not one of an episode already seen
                host.stuck_share += 1 / STUCK_MEMORY
                host.stuck_episode = host.granted
            served = len(host.outstanding) - stuck + answered
            self._back_off(host, first_epoch, self.settings.latency_backoff, at_most=served)
        return stuck, closing

    def _back_off(self, host: _Host, epoch: int, factor: float, *,
                  at_most: float = math.inf) -> None:
        if epoch != host.epoch:
            return  # started before the last back-off: already accounted for
        host.limit = max(float(self.settings.minimum), min(host.limit * factor, at_most))
        host.epoch += 1
        host.probe = None

    def _free(self, host: _Host, now: float) -> bool:
        """A request may start: the host is not held, and fewer are in flight than the
        limit; or one more, to give a connection back for a stuck request."""
        if host.held_until > now:
            return False
        if len(host.outstanding) < host.cap(self.settings):
            return True
        # One more, to give a connection back for a stuck request, if none is being given
        # back: one at a time, as a request that gives one back may end up stuck itself
        # (on a new connection), and then another may go.
        stuck, stuck_closing = self._stuck(host, now)
        return stuck > 0 and host.closing == stuck_closing

    def _grant(self, key: str, host: _Host, now: float, *, behind: int | None) -> Permit:
        # One connection given back per stuck request (module docstring), by a request
        # that is not stuck itself (whose connection the host serves); and by the last
        # requests of a send, at a host where requests get stuck often (those with fewer
        # behind them than the limit) or got stuck lately (the very last): a request
        # stuck at the end would otherwise wait until the host closed the connections
        # left idle.
        host.stuck_share -= host.stuck_share / STUCK_MEMORY
        stuck, stuck_closing = self._stuck(host, now)
        last_often = (behind is not None and behind < host.cap(self.settings)
                      and host.stuck_share > STUCK_OFTEN)
        last_lately = behind == 0 and host.granted - host.stuck_episode < STUCK_LATELY
        close = stuck > host.closing - stuck_closing or last_often or last_lately
        permit = Permit(key, host.granted, now, host.epoch, close)
        if host.probe is None and len(host.outstanding) + 1 >= host.cap(self.settings):
            host.probe = permit.seq
        host.granted += 1
        host.closing += close
        host.outstanding[permit.seq] = (now, permit.epoch, close)
        return permit

    def _hand_out(self, key: str, host: _Host, now: float) -> list[_Waiter]:
        """Grant permits to waiters in turn while there are free ones; returns whom to wake."""
        woken = []
        while host.waiters and self._free(host, now):
            waiter = host.waiters.popleft()
            waiter.permit = self._grant(key, host, now, behind=len(host.waiters))
            woken.append(waiter)
        return woken

    @staticmethod
    def _wake(waiters: Iterator[_Waiter] | list[_Waiter]) -> None:
        for waiter in waiters:
            waiter.wake()

    def _refuse_past(self, key: str, host: _Host, now: float, deadline: float) -> None:
        """NotSentError when no permit can come before `deadline`."""
        held_until = host.held_until
        if now >= deadline or held_until >= min(deadline, now + self.settings.hold_wait_s):
            held = held_until - now
            raise NotSentError(key, held if held > 0 else None)

    def _pause(self, host: _Host, now: float, deadline: float) -> float:
        """How long a waiter sleeps before looking again unless woken: until the hold
        ends or the deadline comes."""
        until = deadline if host.held_until <= now else min(deadline, host.held_until)
        return max(0.0, until - now)

    def _pause_unlocked(self, key: str, deadline: float) -> float:
        with self._lock:
            return self._pause(self._host(key), self._clock(), deadline)

    def _host(self, key: str) -> _Host:
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(self.settings.initial, self.settings.ceiling_s)
        return host
