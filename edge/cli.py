"""`vitrina-edge`: run the gateway agent, replay captures, check a config, show status,
enrol with a one-time code, calibrate the RSSI thresholds with a test phone,
diagnose the gateway (`doctor`), print the configuration reference.

Exit codes: 0 success; 1 a run that did not finish its work (a replay whose outbox did
not drain in time); 2 a config or usage error (for `enrol`: a bundle is already there);
3 the cloud refused the enrolment code; 4 the cloud could not be reached or could not
enrol now; 5 a replay input could not be read, whole or in part (empty, not a capture,
cut short or damaged, or of a link type the gateway does not read): whatever could be
read was replayed and published, and each such file is named with how far it got (for
`calibrate`, nothing is derived from a step whose recording cannot be read); 6 calibration
could not give thresholds (the test phone not told apart, not heard long enough, or the
street and the shop read alike at this gateway): the message says what to do.

`doctor` has codes of its own (`edge.doctor`): 0 every check passed, 1 the gateway runs
but a check warned, 2 a check failed (the gateway cannot run as configured, or would run
without doing its job).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from edge import doctor
from edge.agent import AgentSummary, EdgeAgent
from edge.calibration import (
    DEFAULT_MARGIN_DB,
    INSTRUCTIONS,
    STEPS,
    CalibrationError,
    ConfigEditError,
    Step,
    StepReadings,
    calibrate,
    record_step,
    report,
    toml_snippet,
    write_config,
)
from edge.capture.replay import PcapReplaySource, ReplayStats
from edge.doctor.core import DEFAULT_SERVICE_USER, DEFAULT_TIMEOUT_S, DEFAULT_UNIT
from edge.enrol import (
    CloudUnreachableError,
    EnrolmentRefusedError,
    EnrolmentUsageError,
    agent_group,
    enrol,
)
from edge.keystore import KeyStoreError
from edge.outbox import read_stats
from edge.pseudonymize import SightingPseudonymizer
from edge.reference import reference_markdown
from edge.settings import (
    DEFAULT_CONFIG_PATH,
    EdgeSettings,
    SettingsError,
    config_path_from_env,
    get_settings,
    load_settings,
)
from edge.sources import (
    build_advertiser,
    build_live_sources,
    build_replay_source,
    sightings_carry_wall_time,
)
from shared.logs import configure_logging
from shared.status import ZoneThreshold

EXIT_OK, EXIT_INCOMPLETE, EXIT_CONFIG, EXIT_REFUSED, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
EXIT_UNREADABLE_INPUT = 5
EXIT_CALIBRATION_FAILED = 6
#: How long each calibration step listens, live.
DEFAULT_STEP_S = 20.0
#: How long `replay` waits, after the capture ends, for the broker to take every event.
DEFAULT_DRAIN_TIMEOUT_S = 60.0
#: Progress lines while a replay runs: often enough to see it move, rarely enough to read.
PROGRESS_INTERVAL_S = 1.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitrina-edge",
        description="Vitrina gateway agent: sees phones, pseudonymizes, publishes presence.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "--config",
            type=Path,
            default=None,
            help="TOML config file (default: $VITRINA_EDGE_CONFIG or /etc/vitrina/edge.toml)",
        )
        return command

    with_config("run", "Capture from the configured sources and publish until stopped.")
    replay = with_config("replay", "Replay pcap captures through the pipeline and publish.")
    replay.add_argument("--pcap", type=Path, nargs="+", required=True, metavar="FILE")
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=float,
        default=None,
        help="replay speed (1 = as recorded, 10 = ten times faster)",
    )
    pace.add_argument("--max-speed", action="store_true", help="replay as fast as possible")
    replay.add_argument(
        "--now",
        action="store_true",
        help="replay the recording as if it started now (its own timing kept), e.g. to "
        "watch it on the console's live page",
    )
    replay.add_argument(
        "--outbox",
        type=Path,
        default=None,
        help="outbox database to use instead of the configured one",
    )
    replay.add_argument(
        "--drain-timeout",
        type=float,
        default=DEFAULT_DRAIN_TIMEOUT_S,
        help="seconds to wait for the broker to take every event",
    )
    replay.add_argument("--quiet", action="store_true", help="no progress lines")
    calibrate_help = ("Walk a test phone to the gateway, outside, the door and inside, and derive "
                      "this gateway's visitor threshold and zones from what it reads.")
    calibrate = with_config("calibrate", calibrate_help)
    calibrate.add_argument("--seconds", type=float, default=DEFAULT_STEP_S,
                           help=f"how long each step listens (default {DEFAULT_STEP_S:g})")
    calibrate.add_argument("--recorded", action="append", default=[], metavar="STEP=FILE",
                           help="use a capture recorded at one step instead of the radios; "
                           f"give all of {', '.join(STEPS)}")
    calibrate.add_argument("--margin", type=float, default=DEFAULT_MARGIN_DB,
                           help="dB kept between a threshold and the readings on either side "
                           f"(default {DEFAULT_MARGIN_DB:g})")
    calibrate.add_argument("--phone", metavar="CODE", default=None,
                           help="the test phone's code, when several devices were as strong")
    calibrate.add_argument("--door-zone", default="entrance", help="the doorway's zone name")
    calibrate.add_argument("--inside-zone", default="floor", help="the sales floor's zone name")
    calibrate.add_argument("--write", action="store_true",
                           help="write the thresholds into the config file (else only shown)")
    with_config("check-config", "Validate a config file and print OK or the problems.")
    reference_help = ("Print the configuration reference (Markdown): every key of the config "
                      "file, its type, default and what it does.")
    commands.add_parser("settings-reference", help=reference_help, description=reference_help)
    status = with_config("status", "Show the outbox and the last heartbeat of this gateway.")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    doctor = with_config("doctor", "Check that this gateway can run: config, bundle, broker "
                         "and login, clock, radios, disk, service; one line each with a fix.")
    doctor.add_argument("--service-user", default=DEFAULT_SERVICE_USER, metavar="USER",
                        help="the user the agent runs as, whose access to the bundle is "
                        f"checked (default {DEFAULT_SERVICE_USER})")
    doctor.add_argument("--unit", default=DEFAULT_UNIT,
                        help=f"the systemd unit of the agent (default {DEFAULT_UNIT})")
    doctor.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help="how long each network check may take (default "
                        f"{DEFAULT_TIMEOUT_S:g} s)")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    enrol_help = "Exchange a one-time enrolment code from the console for this gateway's bundle."
    enrol = commands.add_parser("enrol", help=enrol_help, description=enrol_help)
    enrol.add_argument("--code", required=True, help="the code, e.g. K7QX-3FHM")
    enrol.add_argument("--cloud", required=True, metavar="URL",
                       help="the orchestrator's https:// address (as the console shows it)")
    enrol.add_argument("--dir", type=Path, default=DEFAULT_CONFIG_PATH.parent,
                       help=f"where to write the bundle (default {DEFAULT_CONFIG_PATH.parent})")
    enrol.add_argument("--ca-file", type=Path, default=None,
                       help="CA certificate to trust for the cloud (default: the system's)")
    enrol.add_argument("--force", action="store_true",
                       help="replace a bundle that is already there")
    enrol.add_argument("--group", default=None, metavar="NAME",
                       help="a group that may read the bundle too (default: the agent's "
                            "group, vitrina-edge, where it exists; else root only)")
    return parser


def _load(path: Path | None, out: TextIO) -> EdgeSettings | None:
    try:
        return get_settings(path or config_path_from_env())
    except SettingsError as error:
        print(f"config error in {error.path}:", file=out)
        for problem in error.problems:
            print(f"  {problem}", file=out)
        return None


def check_config(path: Path | None) -> int:
    settings = _load(path, sys.stdout)
    if settings is None:
        return EXIT_CONFIG
    identity = settings.identity
    print(
        f"OK: {identity.tenant}/{identity.store}/{identity.gateway}, "
        f"{len(settings.keys.key)} key(s), active {settings.keys.active}"
    )
    return EXIT_OK


def show_status(path: Path | None, *, as_json: bool) -> int:
    settings = _load(path, sys.stderr)
    if settings is None:
        return EXIT_CONFIG
    outbox_path = settings.outbox.path
    if not outbox_path.exists():
        print(f"no outbox at {outbox_path}: the agent has not run yet", file=sys.stderr)
        return EXIT_INCOMPLETE
    stats, status_json = read_stats(outbox_path)
    status = json.loads(status_json) if status_json else None
    oldest = stats.oldest_created
    oldest_age = None if oldest is None else round(time.time() - oldest, 1)
    report = {
        "outbox": str(outbox_path),
        "queue_depth": stats.depth,
        "oldest_event_age_s": oldest_age,
        "published_total": stats.published,
        "dropped_total": stats.dropped,
        "last_status": status,
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"outbox            {outbox_path}")
    print(f"queue depth       {stats.depth}")
    print(f"oldest event age  {'-' if oldest_age is None else f'{oldest_age} s'}")
    print(f"published (total) {stats.published}")
    print(f"dropped (total)   {stats.dropped}")
    if status:
        print(
            f"last heartbeat    {status.get('sent_at')} "
            f"({'online' if status.get('online') else 'offline'})"
        )
        print(f"uptime            {status.get('uptime_s')} s")
        print(f"devices tracked   {status.get('devices_tracked')}")
        print(f"rejected frames   {status.get('rejected_frames')}")
        print(f"active key        {status.get('active_key_id')}")
        figures = [
            ("agent CPU", status.get("cpu_percent"), "{:g} % of a core"),
            ("agent memory", status.get("memory_bytes"), "{:,} bytes"),
            ("temperature", status.get("temperature_c"), "{:g} °C"),
            ("disk free", status.get("disk_free_bytes"), "{:,} bytes"),
        ]
        for label, value, form in figures:
            if value is not None:
                print(f"{label:<17} {form.format(value)}")
        print(f"keys held         {', '.join(status.get('key_ids') or []) or '-'}")
        for name, health in (status.get("sources") or {}).items():
            print(f"source {name:<10} {_describe_source(health)}")
    return EXIT_OK


def run_doctor(args: argparse.Namespace) -> int:
    results = doctor.diagnose(args.config or config_path_from_env(),
                              service_user=args.service_user, unit=args.unit,
                              timeout_s=args.timeout)
    if args.json:
        doctor.render_json(results, sys.stdout)
    else:
        doctor.render(results, sys.stdout)
    return doctor.exit_status(results)


def _describe_source(health: dict[str, Any]) -> str:
    """One source's line of `status`: the counters, then what is only there when it says
    something (a scan mode, files that could not be read, a degraded mode, the last error)."""
    parts = [f"alive={health.get('alive')} frames={health.get('frames')} "
             f"errors={health.get('errors')} restarts={health.get('restarts')}"]
    if health.get("mode"):
        parts.append(f"mode={health['mode']}")
    if health.get("files_failed"):
        parts.append(f"files_failed={health['files_failed']}")
    line = " ".join(parts)
    for label in ("degraded", "last_error"):
        if health.get(label):
            line += f"\n  {label.replace('_', ' ')}: {health[label]}"
    return line


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)


async def _run_live(settings: EdgeSettings) -> int:
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    sources = build_live_sources(settings)
    agent = EdgeAgent(settings, sources, live=True, wall_clock=sightings_carry_wall_time(sources),
                      advertiser=build_advertiser(settings))
    await agent.run(stop)
    return EXIT_OK


async def _progress(agent: EdgeAgent, out: TextIO, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), PROGRESS_INTERVAL_S)
        except TimeoutError:
            summary = agent.summary(drained=False)
            print(
                f"frames {summary.frames}  sightings {summary.sightings}  "
                f"events {summary.events}  queued {summary.queue_depth}  "
                f"published {summary.published_events}",
                file=out,
                flush=True,
            )


async def _replay(settings: EdgeSettings, args: argparse.Namespace) -> int:
    speed = None if args.max_speed else (args.speed if args.speed is not None else 1.0)
    missing = [str(path) for path in args.pcap if not path.is_file()]
    if missing:
        print(f"no such capture file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_CONFIG
    if args.outbox is not None:
        settings = settings.model_copy(
            update={"outbox": settings.outbox.model_copy(update={"path": args.outbox})}
        )
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    source = build_replay_source(settings, args.pcap, speed=speed, shift_to_now=args.now)
    agent = EdgeAgent(settings, [source], live=False, count_devices=True)
    progress_stop = asyncio.Event()
    progress = None
    if not args.quiet:
        progress = asyncio.create_task(_progress(agent, sys.stderr, progress_stop))
    started = time.monotonic()
    summary = await agent.run(stop, drain_timeout=args.drain_timeout)
    progress_stop.set()
    if progress is not None:
        await progress
    print_summary(summary, source.stats, time.monotonic() - started, sys.stdout)
    for failure in source.stats.file_errors:
        print(f"cannot read capture {failure}", file=sys.stderr)
    if not summary.drained:
        print(
            f"{summary.queue_depth} events are still in the outbox "
            "(they are published on the next start)",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    if source.stats.files_failed:
        return EXIT_UNREADABLE_INPUT
    return EXIT_OK


def print_summary(
    summary: AgentSummary, capture: ReplayStats, elapsed_s: float, out: TextIO
) -> None:
    """The replay's figures. Files that could not be read are counted apart from frames:
    a file cut short is one failure, not a rejected frame."""
    ratio = f"{summary.reduction_ratio:.1f}x"
    failed = capture.files_failed
    unsupported = ", ".join(
        f"link type {linktype}: {count}"
        for linktype, count in sorted(capture.unsupported_linktypes.items())
    )
    rows = [
        ("files", f"{capture.files} ({failed} could not be read)" if failed else capture.files),
        ("frames", capture.frames),
        ("rejected frames", capture.rejected),
        ("salvaged frames", capture.salvaged),
        ("unsupported", f"{capture.unsupported} ({unsupported})" if unsupported else 0),
        ("sightings", summary.sightings),
        ("devices", summary.devices),
        (
            "events",
            f"{summary.events} (enter {summary.enters}, dwell {summary.dwells}, "
            f"exit {summary.exits})",
        ),
        ("reduction ratio", f"{ratio} (sightings per event)"),
        (
            "published",
            f"{summary.published_events} events in {summary.published_messages} messages",
        ),
        ("occupancy", f"{summary.occupancy_reports} minutes reported, "
                      f"{summary.published_reports} published"),
        ("drops", summary.dropped),
        ("still queued", summary.queue_depth),
        ("elapsed", f"{elapsed_s:.1f} s"),
    ]
    print("replay summary", file=out)
    for name, value in rows:
        print(f"  {name:<16} {value}", file=out)


def _recorded_steps(items: Sequence[str]) -> dict[Step, Path] | str:
    """`--recorded STEP=FILE` options as a file per step, or what is wrong with them."""
    recorded: dict[Step, Path] = {}
    for item in items:
        name, equals, file = item.partition("=")
        step = next((known for known in STEPS if known == name.strip()), None)
        if not equals or step is None or not file:
            return f"--recorded {item}: expected STEP=FILE with STEP one of {', '.join(STEPS)}"
        recorded[step] = Path(file)
    missing = [step for step in STEPS if step not in recorded]
    if recorded and missing:
        return f"--recorded: no recording for {', '.join(missing)}"
    absent = [str(path) for path in recorded.values() if not path.is_file()]
    if absent:
        return f"no such capture file: {', '.join(absent)}"
    return recorded


def _press_enter(prompt: str) -> None:
    try:
        input(prompt)
    except EOFError:  # no terminal: go on at once
        print()


async def _calibrate(settings: EdgeSettings, args: argparse.Namespace, config: Path) -> int:
    if args.seconds <= 0 or args.margin < 0:
        print("--seconds must be positive and --margin not negative", file=sys.stderr)
        return EXIT_CONFIG
    for name in (args.door_zone, args.inside_zone):
        try:
            ZoneThreshold(zone=name, min_rssi=0)
        except ValueError:
            print(f"not a zone name: {name!r}", file=sys.stderr)
            return EXIT_CONFIG
    recorded = _recorded_steps(args.recorded)
    if isinstance(recorded, str):
        print(recorded, file=sys.stderr)
        return EXIT_CONFIG
    pseudonymizer = SightingPseudonymizer(settings.keys.tenant_keys(), settings.keys.active,
                                          settings.tz)
    steps: dict[Step, StepReadings] = {}
    if recorded:
        for step in STEPS:
            source = build_replay_source(settings, [recorded[step]], speed=None)
            steps[step] = await record_step([source], pseudonymizer)
            if source.stats.files_failed:
                for failure in source.stats.file_errors:
                    print(f"cannot read capture {failure}", file=sys.stderr)
                return EXIT_UNREADABLE_INPUT
    else:
        sources = [source for source in build_live_sources(settings)
                   if not isinstance(source, PcapReplaySource)]
        if not sources:
            print("no radio is enabled in the config: calibration listens with [sources.ble] "
                  "(or [sources.wifi_monitor]); or give --recorded captures", file=sys.stderr)
            return EXIT_CONFIG
        for number, step in enumerate(STEPS, 1):
            print(f"step {number}/{len(STEPS)}, {step}: {INSTRUCTIONS[step]}", flush=True)
            await asyncio.to_thread(
                _press_enter, f"  press Enter, then keep still for {args.seconds:g} s ")
            steps[step] = await record_step(sources, pseudonymizer, seconds=args.seconds)
            print(f"  heard {len(steps[step])} device(s)", flush=True)
    try:
        result = calibrate(steps, code=args.phone, margin_db=args.margin,
                           smoothing_alpha=settings.tracker.smoothing_alpha,
                           door_zone=args.door_zone, inside_zone=args.inside_zone)
    except CalibrationError as error:
        print(f"calibration failed: {error}", file=sys.stderr)
        return EXIT_CALIBRATION_FAILED
    identity = settings.identity
    print(f"calibration of {identity.tenant}/{identity.store}/{identity.gateway}")
    for line in report(result):
        print(f"  {line}")
    snippet = toml_snippet(result)
    if not args.write:
        print(f"\nfor {config} (replacing its tracker.rssi_floor and every [[zones]] table), "
              "or run again with --write:\n")
        print(snippet, end="")
        return EXIT_OK
    stamp = time.strftime("%Y-%m-%d", time.localtime())
    try:
        write_config(config, result, stamp=stamp, check=load_settings)
    except (ConfigEditError, OSError, SettingsError) as error:
        print(f"cannot write {config}: {error}; add these lines by hand:\n{snippet}",
              file=sys.stderr)
        return EXIT_CONFIG
    print(f"\nwritten to {config}; restart the agent to apply it (systemctl restart "
          "vitrina-edge). A rssi_floor or zones in the cloud's config for this gateway "
          "still take precedence.")
    return EXIT_OK


def enrol_gateway(args: argparse.Namespace) -> int:
    try:
        enrolled = enrol(args.cloud, code=args.code, directory=args.dir,
                         ca_file=args.ca_file, force=args.force,
                         group=agent_group(args.group))
    except EnrolmentUsageError as error:
        print(f"vitrina-edge enrol: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except EnrolmentRefusedError as error:
        print(f"vitrina-edge enrol: refused: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except CloudUnreachableError as error:
        print(f"vitrina-edge enrol: {error}; the code was not used, try again",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    except OSError as error:
        print(f"vitrina-edge enrol: cannot write the bundle: {error}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        load_settings(enrolled.config)
    except SettingsError as error:
        print(f"vitrina-edge enrol: the bundle written to {enrolled.config} does not load: "
              f"{error}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"enrolled as {enrolled.tenant}/{enrolled.store}/{enrolled.gateway}; bundle in "
          f"{enrolled.config.parent} (start the agent: systemctl restart vitrina-edge)")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "enrol":
        return enrol_gateway(args)
    if args.command == "settings-reference":
        print(reference_markdown(), end="")
        return EXIT_OK
    if args.command == "check-config":
        return check_config(args.config)
    if args.command == "doctor":
        return run_doctor(args)
    if args.command == "status":
        return show_status(args.config, as_json=args.json)
    settings = _load(args.config, sys.stderr)
    if settings is None:
        return EXIT_CONFIG
    configure_logging(level=settings.logging.level, json_lines=settings.logging.format == "json")
    try:
        if args.command == "run":
            return asyncio.run(_run_live(settings))
        if args.command == "calibrate":
            return asyncio.run(_calibrate(settings, args, args.config or config_path_from_env()))
        return asyncio.run(_replay(settings, args))
    except KeyStoreError as error:
        print(f"config error: {error}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
