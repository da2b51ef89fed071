"""Pseudonymization: the step where a raw identifier becomes a keyed pseudonym.

Everything after this module sees only `PseudonymousSighting`s. Globally unique
identifiers (a public MAC, an iBeacon or Eddystone id, the shop app's install id) get
the stable pseudonym, which the cloud can link to a customer who consented. A
randomized MAC gets a daily pseudonym keyed on the store-local day: it is never
linkable and stops being comparable at the store's midnight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time, timedelta, tzinfo
from typing import NamedTuple

from edge.sighting import Sighting
from shared.identifiers import IdentifierKind
from shared.presence import PseudonymScope
from shared.pseudonym import Pseudonymizer, TenantKey


class UnknownKeyError(KeyError):
    """A key id that is not provisioned on this gateway was asked to become active."""


#: Pseudonyms remembered per scope. A phone is seen hundreds of times per visit, so it
#: is hashed once per visit rather than per sighting; a store has far fewer devices at
#: once than this, and the bound keeps a street of rotating random addresses from
#: growing the cache (it is emptied when full).
PSEUDONYM_CACHE_LIMIT = 8192


class PseudonymousSighting(NamedTuple):
    """A sighting after pseudonymization: carries no raw identifier.

    Immutable like the frozen dataclasses elsewhere, but a NamedTuple: one is built per
    sighting, and a tuple is several times cheaper to build than a frozen dataclass.
    """

    at: float
    pseudonym: str
    key_id: str
    scope: PseudonymScope
    kind: IdentifierKind
    randomized: bool
    rssi: float | None
    source: str


#: Told about a sighting that could not be pseudonymized (and the error), so a batch goes on.
SightingErrorHandler = Callable[[Sighting, Exception], None]


class StoreDay:
    """Maps epoch seconds to the store-local calendar day, caching the current day's span
    so the common case (every sighting of today) is two comparisons."""

    __slots__ = ("_day", "_end", "_start", "tz")

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self._start = 0.0
        self._end = -1.0
        self._day = date(1970, 1, 1)

    def day_of(self, at: float) -> date:
        if self._start <= at < self._end:
            return self._day
        day = datetime.fromtimestamp(at, self.tz).date()
        start = datetime.combine(day, time(0), self.tz).timestamp()
        end = datetime.combine(day + timedelta(days=1), time(0), self.tz).timestamp()
        if start <= at < end:  # false only around an odd DST switch at midnight
            self._day, self._start, self._end = day, start, end
        return day

    def span_of(self, at: float) -> tuple[date, float, float]:
        """The day of `at` and the epoch seconds [start, end) over which it is that day;
        an empty span (start > end) when the day is irregular and must be recomputed."""
        day = self.day_of(at)
        if self._start <= at < self._end:
            return day, self._start, self._end
        return day, 0.0, -1.0


class SightingPseudonymizer:
    """Pseudonymizes sightings under the active tenant key; the key can switch live.

    Holds a bounded in-memory cache from canonical identifier to pseudonym: it lives
    inside this step, is never written anywhere, and is emptied on key rotation and
    (for daily pseudonyms) at the store's midnight.
    """

    __slots__ = (
        "_active", "_by_key", "_daily_cache", "_daily_day", "_daily_end", "_daily_start",
        "_key_id", "_stable_cache", "_store_day", "pseudonymized",
    )

    def __init__(self, keys: Mapping[str, TenantKey], active_key_id: str, tz: tzinfo) -> None:
        if not keys:
            raise ValueError("at least one tenant key is needed")
        self._by_key = {key_id: Pseudonymizer(key) for key_id, key in keys.items()}
        if active_key_id not in self._by_key:
            raise UnknownKeyError(active_key_id)
        self._active = self._by_key[active_key_id]
        self._key_id = self._active.key_id
        self._store_day = StoreDay(tz)
        self._stable_cache: dict[str, str] = {}
        self._daily_cache: dict[str, str] = {}
        #: The store day the daily cache belongs to, and the span of epoch seconds in
        #: which a sighting falls on it: one comparison per sighting finds today.
        self._daily_day = date.min
        self._daily_start, self._daily_end = 0.0, -1.0
        self.pseudonymized = 0

    @property
    def active_key_id(self) -> str:
        return self._active.key_id

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._by_key)

    def replace_keys(self, keys: Mapping[str, TenantKey], active_key_id: str) -> None:
        """Hold exactly `keys` from now on, `active_key_id` pseudonymizing: a key left out
        is no longer referenced here (rotation delivered a new set, or retired one)."""
        if active_key_id not in keys:
            raise UnknownKeyError(active_key_id)
        self._by_key = {key_id: Pseudonymizer(key) for key_id, key in keys.items()}
        self._active = self._by_key[active_key_id]
        self._key_id = active_key_id
        self._stable_cache.clear()  # rare, and a cached pseudonym may be of a key now gone
        self._daily_cache.clear()

    def set_active_key(self, key_id: str) -> None:
        """Rotate: new sightings use `key_id`. Devices then reappear under new pseudonyms,
        and the old ones leave through the tracker's normal exit timeout."""
        try:
            active = self._by_key[key_id]
        except KeyError:
            raise UnknownKeyError(key_id) from None
        if active is not self._active:
            self._active = active
            self._key_id = active.key_id
            self._stable_cache.clear()
            self._daily_cache.clear()

    def pseudonymize(self, sighting: Sighting) -> PseudonymousSighting:
        """The sighting with its identifier replaced by the pseudonym."""
        return self.pseudonymize_many((sighting,))[0]

    def pseudonymize_many(
        self, sightings: Iterable[Sighting], on_error: SightingErrorHandler | None = None
    ) -> list[PseudonymousSighting]:
        """The sightings with their identifiers replaced by pseudonyms, in order.

        This runs for every sighting a gateway hears: the caches and today's span are
        looked up once per batch, then one comparison finds the day and one dict lookup
        the pseudonym. A malformed sighting goes to `on_error` and is left out; without
        `on_error` the error propagates.
        """
        pseudonymous: list[PseudonymousSighting] = []
        append = pseudonymous.append
        key_id = self._key_id
        stable_cache = self._stable_cache
        daily_cache = self._daily_cache  # emptied in place, never replaced
        day_start, day_end = self._daily_start, self._daily_end
        for sighting in sightings:
            try:
                at, kind, canonical, randomized, rssi, source = sighting
                if randomized:
                    if not day_start <= at < day_end:
                        self._switch_day(at)
                        day_start, day_end = self._daily_start, self._daily_end
                    pseudonym = daily_cache.get(canonical)
                    if pseudonym is None:
                        pseudonym = self._active.daily(canonical, self._daily_day)
                        _remember(daily_cache, canonical, pseudonym)
                    scope = _DAILY
                else:
                    pseudonym = stable_cache.get(canonical)
                    if pseudonym is None:
                        pseudonym = self._active.stable(canonical)
                        _remember(stable_cache, canonical, pseudonym)
                    scope = _STABLE
                append(_new_tuple(PseudonymousSighting, (
                    at, pseudonym, key_id, scope, kind, randomized, rssi, source)))
            except Exception as error:
                if on_error is None:
                    raise
                on_error(sighting, error)
        self.pseudonymized += len(pseudonymous)
        return pseudonymous

    def _switch_day(self, at: float) -> None:
        """Make the daily cache that of the store day of `at` (emptied when the day changes)."""
        day, self._daily_start, self._daily_end = self._store_day.span_of(at)
        if day != self._daily_day:
            self._daily_cache.clear()
            self._daily_day = day


_DAILY, _STABLE = PseudonymScope.DAILY, PseudonymScope.STABLE


def _remember(cache: dict[str, str], canonical: str, pseudonym: str) -> None:
    if len(cache) >= PSEUDONYM_CACHE_LIMIT:
        cache.clear()
    cache[canonical] = pseudonym


_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__
