"""Replaying recorded captures through the gateway's own decoders.

The demo, the tests and the benchmarks feed pcap/pcapng files through the same
decoding a live gateway runs. Several files are merged by capture time (like
mergecap), because a gateway's radios record side by side: a Wi-Fi file and a BLE
file of the same visit interleave, they do not follow one another.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Final

from edge.capture.beacons import BeaconConfig
from edge.capture.decode import DecodeStats, FrameDecoder, ProbeHook, supported_linktypes_text
from edge.capture.pcapfile import CaptureFileError, CaptureTruncatedError, read_frames
from edge.capture.source import ProbeSink, sleep_unless_stopped
from edge.sighting import Sighting
from shared.status import SourceHealth

logger = logging.getLogger(__name__)

#: Sightings decoded per hop to the worker thread: big enough that thread hand-offs
#: cost nothing next to decoding, small enough that the loop never waits long on one.
REPLAY_BATCH: Final = 2048
#: Pacing never sleeps in slices shorter than this; shorter waits cost more than they fix.
MIN_PACING_SLEEP_S: Final = 0.002


@dataclass(slots=True)
class ReplayStats(DecodeStats):
    """Decode counters plus file-level ones; mutated while a replay runs, so it shows progress.

    File failures are kept apart from frame outcomes: `files_failed` counts inputs that
    could not be read (whole or in part), each described in `file_errors`; the frames
    read before a file's damage count as frames like any other.
    """

    files: int = 0
    files_failed: int = 0
    last_error: str | None = None
    #: One line per file that could not be read, saying how far it got.
    file_errors: list[str] = field(default_factory=list)

    def file_failed(self, description: str) -> None:
        self.files_failed += 1
        self.last_error = description
        self.file_errors.append(description)


def describe_failure(name: str, error: Exception, frames: int) -> str:
    """What went wrong with a capture file and how far reading it got, for an operator:
    "store.pcap: truncated after 1,234 frames (record 1234 data is truncated)"."""
    if isinstance(error, OSError):
        return f"{name}: cannot be read ({error.strerror or error})"
    if not frames:
        return f"{name}: {error}"
    state = "truncated" if isinstance(error, CaptureTruncatedError) else "damaged"
    return f"{name}: {state} after {frames:,} frame{'s' if frames != 1 else ''} ({error})"


def read_pcap_sightings(
    path: Path,
    *,
    beacons: BeaconConfig,
    stats: ReplayStats | None = None,
    source: str = "replay",
    on_probe: ProbeHook | None = None,
) -> Iterator[Sighting]:
    """Sightings of one capture file, synchronously: the fast path for batch replay.

    Never raises for bad content: broken frames are counted in `stats.rejects`, and a
    damaged or unreadable file counts in `stats.files_failed` (after yielding every
    frame before the damage). A file none of whose frames is of a link type we decode
    counts as unreadable too, naming the link type. `on_probe` is told about every probe
    request just before its sighting is yielded.
    """
    counters = stats if stats is not None else ReplayStats()
    counters.files += 1
    decoder = FrameDecoder(beacons, on_probe=on_probe)
    decode = decoder.decode
    record = counters.record
    linktypes_before = Counter(counters.unsupported_linktypes)
    read = 0  # this file's frames (several files may be read interleaved into `counters`)
    try:
        for read, (at, linktype, frame, wire_len) in enumerate(read_frames(path), 1):  # noqa: B007
            sighting = record(decode(linktype, frame, wire_len, at, source))
            if sighting is not None:
                yield sighting
    except (CaptureFileError, OSError) as error:
        description = describe_failure(path.name, error, read)
        counters.file_failed(description)
        logger.warning("capture file cannot be read: %s", description)
        return
    if read and decoder.unsupported == read:
        seen = counters.unsupported_linktypes - linktypes_before
        linktypes = ", ".join(str(number) for number in sorted(seen))
        description = (f"{path.name}: link type {linktypes} is not supported "
                       f"(supported: {supported_linktypes_text()})")
        counters.file_failed(description)
        logger.warning("capture file cannot be read: %s", description)


def merged_sightings(
    paths: Sequence[Path], *, beacons: BeaconConfig, stats: ReplayStats, source: str = "replay",
    on_probe: ProbeHook | None = None,
) -> Iterator[Sighting]:
    """Sightings of several files in capture-time order (each file is assumed time-ordered)."""
    streams = [read_pcap_sightings(p, beacons=beacons, stats=stats, source=source,
                                   on_probe=on_probe) for p in paths]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=_capture_time)


def _capture_time(sighting: Sighting) -> float:
    return sighting.at


def _next_batch(stream: Iterator[Sighting]) -> list[Sighting]:
    return list(islice(stream, REPLAY_BATCH))


class PcapReplaySource:
    """A capture source that plays recorded files, as fast as possible or at recorded speed.

    `speed=None` emits as fast as decoding allows; `speed=1.0` keeps the recorded gaps
    between sightings (2.0 plays twice as fast). `run` returns when the files are
    exhausted or `stop` is set.

    `shift_to_now` moves every sighting's time by one offset, so that the recording starts
    at the moment the replay does: a recorded morning in a store then shows on the live
    page as happening now, with the gaps between its sightings as recorded.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        beacons: BeaconConfig,
        speed: float | None = None,
        shift_to_now: bool = False,
        name: str = "replay",
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("replay speed must be positive (or None for as fast as possible)")
        self.name = name
        self.paths = tuple(paths)
        self.beacons = beacons
        self.speed = speed
        self.shift_to_now = shift_to_now
        self.stats = ReplayStats()
        self._running = False
        self._probe_sink: ProbeSink | None = None

    def attach_probe_sink(self, sink: ProbeSink) -> None:
        """Hand over the probe requests too, each just before its sighting is emitted."""
        self._probe_sink = sink

    def health(self) -> SourceHealth:
        """`errors` are frames (broken, or of a link type not decoded); a file that could
        not be read counts in `files_failed`, described with how far it got in `last_error`."""
        stats = self.stats
        return SourceHealth(
            alive=self._running,
            frames=stats.frames,
            errors=stats.rejected + stats.unsupported,
            restarts=0,
            last_error=stats.last_error,
            files_failed=stats.files_failed,
        )

    async def run(self, emit: Callable[[Sighting], None], stop: asyncio.Event) -> None:
        self._running = True
        sink = self._probe_sink
        #: Probe requests decoded (in the worker thread) whose sightings are not emitted yet.
        probes: list[tuple[float, bytes, float | None]] = []
        stream = merged_sightings(
            self.paths, beacons=self.beacons, stats=self.stats, source=self.name,
            on_probe=None if sink is None else _collect(probes),
        )
        first_at: float | None = None
        started = time.monotonic()
        #: Added to every sighting's time: set at the first one when shifting to now.
        offset: float | None = None if self.shift_to_now else 0.0
        try:
            while not stop.is_set():
                # decoding reads files: a worker thread keeps the loop free meanwhile
                batch = await asyncio.to_thread(_next_batch, stream)
                if not batch:
                    return
                if probes:  # several files decode interleaved: hand them over in time order
                    probes.sort(key=_probe_time, reverse=True)
                for sighting in batch:
                    if self.speed is not None:
                        if first_at is None:  # the clock starts with the first sighting
                            first_at, started = sighting.at, time.monotonic()
                        due = started + (sighting.at - first_at) / self.speed
                        if await _wait_until(due, stop):
                            return
                    elif stop.is_set():
                        return
                    if offset is None:
                        offset = time.time() - sighting.at
                    if sink is not None:
                        while probes and probes[-1][0] <= sighting.at:
                            at, frame, rssi = probes.pop()
                            sink(at + offset, frame, rssi, self.name)
                    emit(sighting._replace(at=sighting.at + offset) if offset else sighting)
                await asyncio.sleep(0)  # let the loop breathe between batches
        finally:
            self._running = False
            close = getattr(stream, "close", None)
            if close is not None:
                # cancelled while a worker thread still reads it: that read ends on its own
                with contextlib.suppress(ValueError):
                    close()


def _collect(probes: list[tuple[float, bytes, float | None]]) -> ProbeHook:
    def collect(at: float, frame: bytes, rssi: float | None) -> None:
        probes.append((at, frame, rssi))

    return collect


def _probe_time(probe: tuple[float, bytes, float | None]) -> float:
    return probe[0]


async def _wait_until(due: float, stop: asyncio.Event) -> bool:
    """Sleep until the monotonic time `due`; True if `stop` was set meanwhile."""
    delay = due - time.monotonic()
    if delay < MIN_PACING_SLEEP_S:
        return stop.is_set()
    return await sleep_unless_stopped(stop, delay)
