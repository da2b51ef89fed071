"""The device itself: its clock, room for the outbox, and the service's state.

The clock is judged without root, by what the time service says, in this order:
`timedatectl show -p NTPSynchronized` (systemd-timedated over D-Bus, whatever syncs the
clock); the flag file systemd-timesyncd touches once it has synchronized
(`/run/systemd/timesync/synchronized`); `chronyc tracking` (chrony's leap status). The
broker is not asked: MQTT carries no time, and the config names no web address whose
Date header could be compared. A clock before this software existed fails outright.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from edge.doctor.core import CheckResult, DoctorContext, fail, ok, skip, warn
from edge.doctor.files import Account

TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
#: sd_booted(): systemd is the init system when this directory exists.
SYSTEMD_RUNTIME = Path("/run/systemd/system")
#: No clock showing an earlier time can be right: this code did not exist yet.
EARLIEST_PLAUSIBLE = datetime(2025, 1, 1, tzinfo=UTC)
#: What an outbox row costs on disk, an event's JSON and SQLite's overhead (measured on
#: the demo capture's events, rounded up).
EVENT_BYTES = 700
#: Below this SQLite cannot be trusted to write (a transaction, the WAL, a checkpoint).
MIN_FREE_BYTES = 32 * 1024 * 1024
COMMAND_TIMEOUT_S = 5.0


def run_command(argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S
                ) -> tuple[int, str]:
    """(exit status, stdout and stderr); 127 when the command is not there."""
    if shutil.which(argv[0]) is None:
        return 127, f"{argv[0]}: not installed"
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s,
                              check=False)
    except subprocess.TimeoutExpired:
        return -1, f"{argv[0]}: no answer within {timeout_s:g} s"
    except OSError as error:
        return 126, f"{argv[0]}: {error.strerror}"
    return done.returncode, (done.stdout + done.stderr).strip()


def check_clock(context: DoctorContext) -> CheckResult:
    """Synchronized by a time service (see the module docstring for how it is told)."""
    now = datetime.now(UTC)
    if now < EARLIEST_PLAUSIBLE:
        return fail("clock", f"the clock says {now:%Y-%m-%d %H:%M} UTC, which cannot be "
                    "right: event times, daily pseudonyms and TLS all depend on it",
                    "give the device network time (timedatectl set-ntp true) and allow "
                    "outgoing UDP 123")
    code, output = run_command(["timedatectl", "show", "--property=NTPSynchronized",
                                "--value"])
    if code == 0 and output in ("yes", "no"):
        if output == "yes":
            return ok("clock", f"synchronized (timedatectl: NTPSynchronized=yes), "
                      f"{now:%Y-%m-%d %H:%M:%S} UTC")
        return warn("clock", "not synchronized (timedatectl: NTPSynchronized=no): event "
                    "times and the day's pseudonyms may be off",
                    "timedatectl set-ntp true; allow outgoing UDP 123; see "
                    "timedatectl timesync-status")
    if TIMESYNC_FLAG.exists():
        return ok("clock", f"synchronized (systemd-timesyncd: {TIMESYNC_FLAG} exists), "
                  f"{now:%Y-%m-%d %H:%M:%S} UTC")
    code, output = run_command(["chronyc", "tracking"])
    if code == 0 and "Leap status" in output:
        if "Not synchronised" not in output:
            return ok("clock", "synchronized (chronyc tracking), "
                      f"{now:%Y-%m-%d %H:%M:%S} UTC")
        return warn("clock", "not synchronized (chronyc: leap status Not synchronised)",
                    "check chrony's sources: chronyc sources; allow outgoing UDP 123")
    return warn("clock", "cannot tell whether the clock is synchronized: timedatectl did not "
                f"answer, {TIMESYNC_FLAG} is absent and chronyc is not there",
                "install and enable a time service: apt-get install systemd-timesyncd")


def _size(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            total += path.with_name(path.name + suffix).stat().st_size
    return total


def _gib(size: float) -> str:
    if size >= 1 << 30:
        return f"{size / (1 << 30):.1f} GiB"
    return f"{size / (1 << 20):.0f} MiB"


def check_disk(context: DoctorContext) -> CheckResult:
    """Room on the outbox's file system for the events it may have to keep."""
    outbox = context.loaded.outbox
    path = outbox.path
    existing = next((parent for parent in [path.parent, *path.parent.parents]
                     if parent.exists()), Path("/"))
    figures = os.statvfs(existing)
    free = figures.f_bavail * figures.f_frsize
    used = _size(path)
    full = outbox.max_events * EVENT_BYTES
    needed = max(full - used, 0)
    where = f"{_gib(free)} free for the outbox at {path}"
    if free < MIN_FREE_BYTES:
        return fail("disk", f"only {where}: events cannot be kept while the broker is away",
                    f"free space on {existing}, or move [outbox].path to a larger file system")
    user = Account.lookup(context.service_user)
    if path.parent.exists() and user is not None and not (
            user.may(path.parent.stat(), 2) and user.can_reach(path.parent) is None):
        return fail("disk", f"{context.service_user} cannot write in {path.parent}",
                    f"chown {context.service_user}: {path.parent} (systemd's StateDirectory "
                    "does this when the unit starts)")
    if free < needed:
        fits = max((free - MIN_FREE_BYTES) // EVENT_BYTES, 0)
        return warn("disk", f"{where}: a full outbox ({outbox.max_events:,} events, about "
                    f"{_gib(full)}) would not fit", f"lower [outbox].max_events to about "
                    f"{fits:,}, or free space on {existing}")
    state = "not created yet" if not path.exists() else f"{_gib(used)} used"
    return ok("disk", f"{where} ({state}); room for {outbox.max_events:,} events")


def check_service(context: DoctorContext) -> CheckResult:
    """`systemctl is-active` and `is-enabled` of the unit, where systemd runs."""
    unit = context.unit
    if not SYSTEMD_RUNTIME.exists():
        return skip("service", "systemd is not running here: the agent is started some other "
                    "way (by hand, in a container)")
    code, state = run_command(["systemctl", "is-active", unit])
    _, enabled = run_command(["systemctl", "is-enabled", unit])
    state = state.splitlines()[0] if state else "unknown"
    boot = "" if enabled.startswith("enabled") else "; it does not start at boot"
    if state == "active":
        if boot:
            return warn("service", f"{unit} is running{boot}", f"systemctl enable {unit}")
        return ok("service", f"{unit} is running and starts at boot")
    if state in ("activating", "reloading", "deactivating"):
        return warn("service", f"{unit} is {state}{boot}",
                    f"run the doctor again in a minute; journalctl -u {unit} -n 50 tells why")
    if state == "failed":
        return fail("service", f"{unit} failed{boot}",
                    f"journalctl -u {unit} -n 50 says why; fix it, then systemctl restart {unit}")
    if code == 4 or "could not be found" in state:
        return fail("service", f"there is no unit {unit}",
                    "install provisioning/systemd/vitrina-edge.service to /etc/systemd/system/ "
                    "(the installer does), then systemctl daemon-reload")
    return warn("service", f"{unit} is {state}{boot}", f"systemctl enable --now {unit}")
