"""RSSI calibration of one gateway: what separates passers-by from visitors, and the zones.

Where the street ends and the shop begins depends on the gateway's place, the walls and
the window, so the thresholds are measured, not guessed. The operator walks a test phone
through four steps while the gateway listens:

1. `phone`: the phone held against the gateway, which tells it apart from every other
   device (it is by far the strongest there);
2. `outside`: on the pavement in front of the shop, where passers-by walk;
3. `door`: in the doorway;
4. `inside`: walking around the sales floor.

From the phone's readings at each position (its other devices ignored) come the visitor
threshold (`tracker.rssi_floor`: a sighting weaker than it is the street and is dropped)
and two zones (`[[zones]]`, on the smoothed RSSI the tracker keeps, once settled at a
position): the doorway and the floor, whichever reads stronger at this gateway first.
Each threshold lies halfway between the weaker position's strong readings (90th
percentile) and the stronger position's weak ones (10th percentile), and only where those
are at least two margins apart: closer than that, the gateway cannot tell the two
positions apart, and calibration says so rather than pick a threshold that misclassifies.

The phone is known by its pseudonym, in memory only; the operator sees a short code cut
from it. Its identifier is never written or published: sightings are pseudonymized as they
arrive, as in the agent.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from edge.capture.source import Source
from edge.private_files import write_private
from edge.pseudonymize import SightingPseudonymizer
from edge.sighting import Sighting
from shared.status import ZoneThreshold

Step = Literal["phone", "outside", "door", "inside"]
Position = Literal["outside", "door", "inside"]
STEPS: Final[tuple[Step, ...]] = ("phone", "outside", "door", "inside")
POSITIONS: Final[tuple[Position, ...]] = ("outside", "door", "inside")
#: What the operator is asked to do at each step.
INSTRUCTIONS: Final[Mapping[Step, str]] = {
    "phone": "Hold the test phone against the gateway (screen on, Bluetooth on).",
    "outside": "Stand outside on the pavement in front of the shop, where people pass by.",
    "door": "Stand in the doorway.",
    "inside": "Walk slowly around the sales floor, corners included.",
}

DEFAULT_MARGIN_DB: Final = 3.0
#: A phone held against a gateway reads far stronger than this; a device weaker than it
#: at the `phone` step cannot be the test phone.
PHONE_MIN_RSSI: Final = -65.0
#: The test phone must lead every other device at the gateway by this much, unless that
#: device moved with it (a phone advertises under several identities: its own adverts
#: and the shop app's beacon, read at the same strength wherever the phone is).
PHONE_LEAD_DB: Final = 8.0
#: Two identities whose median readings differ by no more than this at every position
#: moved together: the same phone.
SAME_PHONE_DB: Final = 4.0
#: Readings of the test phone needed at the gateway and at the door and inside.
MIN_READINGS: Final = 5
#: From this many readings on, percentiles; below, the extreme readings themselves.
PERCENTILE_READINGS: Final = 10
#: Readings outside this open range are not measurements (as in the tracker).
_PLAUSIBLE: Final = (-200.0, 100.0)


class CalibrationError(Exception):
    """Calibration cannot give thresholds; the message tells the operator what to do."""


#: A step's readings: pseudonym to the RSSI of each of its sightings, in order.
StepReadings = dict[str, list[float]]


def phone_code(pseudonym: str) -> str:
    """The short code a device is shown by: six characters of its pseudonym's hash part."""
    return pseudonym.rpartition(":")[2][:6].upper()


async def record_step(
    sources: Sequence[Source],
    pseudonymizer: SightingPseudonymizer,
    *,
    seconds: float | None = None,
) -> StepReadings:
    """What every device read during one step: the sources run until `seconds` passed
    (live radios) or until they end (recordings). Sightings are pseudonymized at once."""
    readings: StepReadings = {}

    def emit(sighting: Sighting) -> None:
        rssi = sighting.rssi
        if rssi is None or not _PLAUSIBLE[0] < rssi < _PLAUSIBLE[1]:
            return
        pseudonym = pseudonymizer.pseudonymize(sighting).pseudonym
        readings.setdefault(pseudonym, []).append(float(rssi))

    stop = asyncio.Event()
    tasks = [asyncio.create_task(source.run(emit, stop)) for source in sources]
    try:
        if seconds is None:
            await asyncio.gather(*tasks)
        else:
            await asyncio.wait(tasks, timeout=seconds)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return readings


@dataclass(frozen=True, slots=True)
class Spread:
    """A position's readings in brief: how many, the weak end, the middle, the strong end."""

    count: int
    low: float
    median: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        ordered = sorted(values)
        if len(ordered) >= PERCENTILE_READINGS:
            deciles = statistics.quantiles(ordered, n=10, method="inclusive")
            low, high = deciles[0], deciles[-1]
        else:
            low, high = ordered[0], ordered[-1]
        return cls(len(ordered), low, statistics.median(ordered), high)


def smoothed(values: Sequence[float], alpha: float, start: float | None = None) -> list[float]:
    """The running average the tracker keeps of a device's RSSI, after each reading
    (from `start`, or from the first reading as the tracker does)."""
    result: list[float] = []
    average = start
    for value in values:
        average = value if average is None else average + alpha * (value - average)
        result.append(average)
    return result


def settled(values: Sequence[float], alpha: float) -> list[float]:
    """The running average of a device staying at one position, once it has settled.

    A step's first readings may come while the operator still walks into place, and the
    average remembers them: it starts from the step's median instead, and the readings
    before the start's weight falls under a tenth are left out (seven at alpha 0.3), as
    long as enough remain.
    """
    if not values:
        return []
    averages = smoothed(values, alpha, start=statistics.median(values))
    warmup = 0 if alpha >= 1 else math.ceil(math.log(0.1) / math.log(1 - alpha))
    return averages[warmup:] if len(averages) - warmup >= MIN_READINGS else averages


def identify_phone(steps: Mapping[Step, StepReadings], code: str | None = None) -> str:
    """The pseudonym of the test phone; CalibrationError when it cannot be told apart."""
    at_gateway = steps["phone"]
    if code is not None:
        matches = [p for p in at_gateway if phone_code(p) == code.strip().upper()]
        if not matches:
            raise CalibrationError(f"no device with code {code} was heard at the gateway")
        return max(matches, key=lambda p: statistics.median(at_gateway[p]))
    candidates = sorted(
        (p for p, values in at_gateway.items()
         if len(values) >= MIN_READINGS and statistics.median(values) >= PHONE_MIN_RSSI),
        key=lambda p: statistics.median(at_gateway[p]), reverse=True,
    )
    if not candidates:
        raise CalibrationError(
            f"no device read stronger than {PHONE_MIN_RSSI:g} dBm at the gateway: hold the "
            "test phone against it, with Bluetooth on and the screen awake")
    phone, strongest = candidates[0], statistics.median(at_gateway[candidates[0]])
    rivals = [p for p in candidates[1:]
              if statistics.median(at_gateway[p]) > strongest - PHONE_LEAD_DB
              and not _moved_together(steps, phone, p)]
    if rivals:
        lines = [_describe_device(steps, p) for p in (phone, *rivals)]
        raise CalibrationError(
            "several devices read as strong as the test phone at the gateway and did not "
            "move with it (a phone or beacon lying near the gateway?): move them away and "
            "start again, or choose the test phone with --phone CODE (it is the one that "
            "reads weakest outside):\n" + "\n".join(lines))
    return phone


def _moved_together(steps: Mapping[Step, StepReadings], first: str, second: str) -> bool:
    for position in POSITIONS:
        one, other = steps[position].get(first), steps[position].get(second)
        if not one or not other:
            if one or other:
                return False  # heard at a position where the other was not
            continue
        if abs(statistics.median(one) - statistics.median(other)) > SAME_PHONE_DB:
            return False
    return True


def _describe_device(steps: Mapping[Step, StepReadings], pseudonym: str) -> str:
    medians = []
    for step in STEPS:
        values = steps[step].get(pseudonym)
        medians.append(f"{step} {statistics.median(values):.0f}" if values else f"{step} -")
    return f"  {phone_code(pseudonym)}: median dBm " + ", ".join(medians)


@dataclass(frozen=True, slots=True)
class Calibration:
    """Thresholds for one gateway, and the readings they come from."""

    rssi_floor: float
    zones: tuple[ZoneThreshold, ...]
    margin_db: float
    phone_code: str
    #: The phone's raw readings per position (the floor is compared with raw RSSI).
    raw: Mapping[str, Spread]
    #: Its readings smoothed as the tracker smooths them (zones are decided on those).
    smooth: Mapping[str, Spread]
    notes: tuple[str, ...] = field(default=())


def _boundary(weaker_high: float, stronger_low: float, margin_db: float) -> float | None:
    """Halfway between two positions' readings, if they are two margins apart; else None."""
    if stronger_low - weaker_high < 2 * margin_db:
        return None
    return float(math.floor((weaker_high + stronger_low) / 2 + 0.5))


def derive_thresholds(
    readings: Mapping[Position, Sequence[float]],
    *,
    margin_db: float = DEFAULT_MARGIN_DB,
    smoothing_alpha: float = 0.3,
    door_zone: str = "entrance",
    inside_zone: str = "floor",
    phone: str = "",
) -> Calibration:
    """The visitor threshold and zones from the test phone's readings at each position."""
    if margin_db < 0:
        raise ValueError("the margin cannot be negative")
    for position in ("door", "inside"):
        count = len(readings.get(position, ()))
        if count < MIN_READINGS:
            raise CalibrationError(
                f"the test phone was heard {count} time{'s' if count != 1 else ''} at the "
                f"{position} position (at least {MIN_READINGS} needed): stay there longer, "
                "or check that the phone is the one held at the gateway")
    raw: dict[str, Spread] = {p: Spread.of(readings[p]) for p in POSITIONS if readings.get(p)}
    smooth: dict[str, Spread] = {p: Spread.of(settled(readings[p], smoothing_alpha))
                                 for p in POSITIONS if readings.get(p)}
    notes: list[str] = []
    visitors_low = min(raw["door"].low, raw["inside"].low)
    outside = raw.get("outside")
    if outside is None:
        # passers-by in front of the shop are not heard at all: the floor only has to
        # keep every visitor, with the margin
        floor = float(math.floor(visitors_low - margin_db + 0.5))
        notes.append("the test phone was not heard outside at all: passers-by there are "
                     "not seen whatever the threshold")
    else:
        boundary = _boundary(outside.high, visitors_low, margin_db)
        if boundary is None:
            raise CalibrationError(
                f"outside, the test phone read up to {outside.high:.0f} dBm, and at the door "
                f"or inside down to {visitors_low:.0f} dBm: less than twice the margin "
                f"({margin_db:g} dB) apart, so this gateway cannot tell passers-by from "
                "visitors. Move it further from the window or the street (or deeper into "
                "the shop) and calibrate again")
        floor = boundary
    near, far = sorted(("door", "inside"), key=lambda p: smooth[p].median, reverse=True)
    names = {"door": door_zone, "inside": inside_zone}
    split = _boundary(smooth[far].high, smooth[near].low, margin_db)
    zones: tuple[ZoneThreshold, ...]
    if split is None or split <= floor:
        zones = ()
        notes.append(f"the door and the sales floor read alike at this gateway: one zone "
                     f"(tracker.default_zone) instead of {door_zone!r} and {inside_zone!r}")
    else:
        zones = (ZoneThreshold(zone=names[near], min_rssi=split),
                 ZoneThreshold(zone=names[far], min_rssi=floor))
    return Calibration(rssi_floor=floor, zones=zones, margin_db=margin_db,
                       phone_code=phone_code(phone) if phone else "", raw=raw, smooth=smooth,
                       notes=tuple(notes))


def calibrate(
    steps: Mapping[Step, StepReadings],
    *,
    code: str | None = None,
    margin_db: float = DEFAULT_MARGIN_DB,
    smoothing_alpha: float = 0.3,
    door_zone: str = "entrance",
    inside_zone: str = "floor",
) -> Calibration:
    """Identify the test phone among the devices heard, then derive from its readings."""
    phone = identify_phone(steps, code)
    readings: dict[Position, list[float]] = {
        position: steps[position].get(phone, []) for position in POSITIONS
    }
    return derive_thresholds(readings, margin_db=margin_db, smoothing_alpha=smoothing_alpha,
                             door_zone=door_zone, inside_zone=inside_zone, phone=phone)


# ---------------------------------------------------------------- showing and saving


def report(calibration: Calibration) -> list[str]:
    """The readings and the thresholds, as the operator reads them."""
    lines = [f"test phone        {calibration.phone_code}" if calibration.phone_code else "",
             "position   readings   weak (p10)   median   strong (p90)   smoothed median"]
    for position in POSITIONS:
        spread = calibration.raw.get(position)
        if spread is None:
            lines.append(f"{position:<10} {0:>8}   not heard")
            continue
        lines.append(f"{position:<10} {spread.count:>8}   {spread.low:>10.1f}   "
                     f"{spread.median:>6.1f}   {spread.high:>12.1f}   "
                     f"{calibration.smooth[position].median:>15.1f}")
    lines.append(f"visitor threshold {calibration.rssi_floor:.0f} dBm (tracker.rssi_floor, "
                 f"margin {calibration.margin_db:g} dB)")
    for zone in calibration.zones:
        lines.append(f"zone {zone.zone:<12} from {zone.min_rssi:.0f} dBm (smoothed)")
    lines.extend(f"note: {note}" for note in calibration.notes)
    return [line for line in lines if line]


def toml_snippet(calibration: Calibration) -> str:
    """The config lines that apply the calibration (what `--write` puts in the file)."""
    lines = ["[tracker]", f"rssi_floor = {calibration.rssi_floor:.1f}"]
    for zone in calibration.zones:
        lines += ["", "[[zones]]", f'zone = "{zone.zone}"', f"min_rssi = {zone.min_rssi:.1f}"]
    return "\n".join(lines) + "\n"


class ConfigEditError(Exception):
    """The config file could not be changed safely; it was left as it was."""


def apply_to_config(text: str, calibration: Calibration, *, stamp: str = "") -> str:
    """The config text with `tracker.rssi_floor` set and every `[[zones]]` table replaced.

    Comments and everything else are kept. The result is parsed and compared with what
    was meant (the old document with those two changes): anything else, such as a
    layout this edit does not understand, raises ConfigEditError.
    """
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigEditError(f"the config is not valid TOML: {error}") from None
    lines = text.splitlines()
    kept: list[str] = []
    in_zones = False
    tracker_at: int | None = None
    floor_set = False
    section = ""
    for line in lines:
        header = _table_header(line)
        if header is not None:
            section = header
            in_zones = header == "[[zones]]"
            if in_zones:
                while kept and kept[-1].lstrip().startswith("#"):
                    kept.pop()  # the comment above the zones goes with them
                continue
            if header == "[tracker]":
                tracker_at = len(kept)
        if in_zones:
            continue
        if section == "[tracker]" and _assigns(line, "rssi_floor"):
            comment = line.partition("#")[2]
            kept.append(f"rssi_floor = {calibration.rssi_floor:.1f}"
                        + (f"  # {comment.strip()}" if comment else ""))
            floor_set = True
            continue
        kept.append(line)
    if not floor_set:
        if tracker_at is None:
            kept += ["", "[tracker]"]
            tracker_at = len(kept) - 1
        kept.insert(tracker_at + 1, f"rssi_floor = {calibration.rssi_floor:.1f}")
    while kept and not kept[-1].strip():
        kept.pop()
    made = "vitrina-edge calibrate" + (f", {stamp}" if stamp else "")
    if calibration.zones:
        kept += ["", f"# Zones by smoothed RSSI, strongest first ({made})."]
    else:
        kept += ["", f"# No zones: the door and the sales floor read alike ({made})."]
    for zone in calibration.zones:
        kept += ["[[zones]]", f'zone = "{zone.zone}"', f"min_rssi = {zone.min_rssi:.1f}", ""]
    result = "\n".join(kept).rstrip("\n") + "\n"
    expected: dict[str, Any] = dict(before)
    expected["tracker"] = {**before.get("tracker", {}), "rssi_floor": calibration.rssi_floor}
    expected.pop("zones", None)
    if calibration.zones:
        expected["zones"] = [{"zone": z.zone, "min_rssi": z.min_rssi} for z in calibration.zones]
    try:
        after = tomllib.loads(result)
    except tomllib.TOMLDecodeError:
        after = None
    if after != expected:
        raise ConfigEditError("the config's layout is not one this command can edit safely "
                              "(tracker or zones written in another TOML form)")
    return result


def _table_header(line: str) -> str | None:
    stripped = line.split("#", 1)[0].strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        return stripped.replace(" ", "")
    return None


def _assigns(line: str, key: str) -> bool:
    name, equals, _ = line.partition("=")
    return bool(equals) and name.strip() == key


def write_config(path: Path, calibration: Calibration, *, stamp: str = "",
                 check: Callable[[Path], object] | None = None) -> None:
    """Apply the calibration to the config file atomically, keeping its permissions
    (it holds the tenant's key); `check` loads the new file before it replaces the old."""
    text = apply_to_config(path.read_text(encoding="utf-8"), calibration, stamp=stamp)
    write_private(path, text, mode=path.stat().st_mode & 0o7777, check=check)
