"""What every check of `vitrina-edge doctor` gives back, and running them in order.

A check is a small function of the `DoctorContext` returning a frozen `CheckResult`:
ok, warn or fail, one sentence saying what it found, and for a warning or a failure one
saying what to do. A check that does not apply here (a radio the config does not
enable, systemd on a machine without it) is skipped with the reason. A check that needs
another one (the login needs a reachable broker) is skipped when that one failed.

Exit status of the command: 0 every check passed (or was skipped); 1 the gateway runs,
but something deserves attention (a warning); 2 the gateway cannot run as configured, or
would run without doing its job (a failure). Usage errors are 2 too, as argparse has it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from edge.outbox import read_stats
from edge.settings import EdgeSettings

EXIT_READY, EXIT_WARNINGS, EXIT_BROKEN = 0, 1, 2
#: The user the systemd unit runs the agent as (provisioning/systemd/vitrina-edge.service).
DEFAULT_SERVICE_USER = "vitrina-edge"
DEFAULT_UNIT = "vitrina-edge"
#: How long a network check (broker, login, hostapd, D-Bus) may take before it fails.
DEFAULT_TIMEOUT_S = 5.0


class Outcome(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: str
    outcome: Outcome
    message: str
    #: What to do about a warning or a failure; None when there is nothing to do.
    fix: str | None = None


def ok(check: str, message: str) -> CheckResult:
    return CheckResult(check, Outcome.OK, message)


def warn(check: str, message: str, fix: str) -> CheckResult:
    return CheckResult(check, Outcome.WARN, message, fix)


def fail(check: str, message: str, fix: str) -> CheckResult:
    return CheckResult(check, Outcome.FAIL, message, fix)


def skip(check: str, reason: str) -> CheckResult:
    return CheckResult(check, Outcome.SKIP, reason)


@dataclass(frozen=True, slots=True)
class AgentReport:
    """The running agent's last heartbeat as its outbox recorded it (`record_status`)."""

    online: bool
    sent_at: datetime
    status: dict[str, Any]

    def fresh(self, status_interval_s: float) -> bool:
        """Recent enough that the agent is connected now: three heartbeats' time."""
        age = (datetime.now(UTC) - self.sent_at).total_seconds()
        return self.online and age <= 3 * status_interval_s + 5


@dataclass(frozen=True, slots=True)
class DoctorContext:
    config_path: Path
    settings: EdgeSettings | None
    service_user: str = DEFAULT_SERVICE_USER
    unit: str = DEFAULT_UNIT
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: Why the outbox could not be read (None: read, or no outbox yet).
    outbox_error: str | None = None
    agent: AgentReport | None = None

    @property
    def loaded(self) -> EdgeSettings:
        assert self.settings is not None, "checks that need settings run only when they loaded"
        return self.settings

    def agent_connected(self) -> bool:
        return self.agent is not None and self.agent.fresh(self.loaded.status_interval_s)


def read_agent_report(settings: EdgeSettings) -> tuple[AgentReport | None, str | None]:
    """The last heartbeat the agent recorded, read-only; (None, why) when unreadable."""
    path = settings.outbox.path
    if not path.exists():
        return None, None
    try:
        _stats, status_json = read_stats(path)
    except Exception as error:  # sqlite3.Error, PermissionError: a reason, not a crash
        return None, f"cannot read the outbox {path}: {error}"
    if not status_json:
        return None, None
    try:
        status = json.loads(status_json)
        sent_at = datetime.fromisoformat(status["sent_at"])
        return AgentReport(bool(status.get("online")), sent_at, status), None
    except (ValueError, KeyError, TypeError):
        return None, None


CheckFunction = Callable[[DoctorContext], CheckResult]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    run: CheckFunction
    #: Checks that must have passed (ok or warn) for this one to mean anything.
    needs: tuple[str, ...] = ()
    #: False for the few that do not read the settings.
    needs_settings: bool = True


def run_checks(
    context: DoctorContext, checks: Sequence[Check], first: Sequence[CheckResult] = ()
) -> list[CheckResult]:
    """Every check in order; one that raises is a failure naming the error, not a crash."""
    results = list(first)
    by_name = {result.check: result for result in results}
    for check in checks:
        if check.needs_settings and context.settings is None:
            result = skip(check.name, "the config did not load")
        else:
            missing = [name for name in check.needs
                       if by_name.get(name) is None
                       or by_name[name].outcome not in (Outcome.OK, Outcome.WARN)]
            if missing:
                result = skip(check.name, f"needs the {', '.join(missing)} check to pass first")
            else:
                try:
                    result = check.run(context)
                except Exception as error:  # a check's own defect must not hide the others
                    result = fail(check.name, f"the check itself failed: "
                                  f"{type(error).__name__}: {error}",
                                  "report this as a bug, with the output of the doctor")
        results.append(result)
        by_name[result.check] = result
    return results


def exit_status(results: Sequence[CheckResult]) -> int:
    outcomes = {result.outcome for result in results}
    if Outcome.FAIL in outcomes:
        return EXIT_BROKEN
    if Outcome.WARN in outcomes:
        return EXIT_WARNINGS
    return EXIT_READY


_LABELS = {Outcome.OK: "ok", Outcome.WARN: "WARN", Outcome.FAIL: "FAIL", Outcome.SKIP: "skip"}
_VERDICTS = {
    EXIT_READY: "the gateway is ready",
    EXIT_WARNINGS: "the gateway can run, but see the warnings",
    EXIT_BROKEN: "the gateway cannot run as configured, or would run without doing its job",
}


def render(results: Sequence[CheckResult], out: TextIO) -> None:
    """One line per check: outcome, name, what was found and, after `fix:`, what to do."""
    width = max((len(result.check) for result in results), default=0)
    for result in results:
        line = f"{_LABELS[result.outcome]:<4}  {result.check:<{width}}  {result.message}"
        if result.fix:
            line += f" -- fix: {result.fix}"
        print(line, file=out)
    failed = sum(result.outcome is Outcome.FAIL for result in results)
    warned = sum(result.outcome is Outcome.WARN for result in results)
    status = exit_status(results)
    print(f"{failed} failed, {warned} warned: {_VERDICTS[status]} (exit {status})", file=out)


def render_json(results: Sequence[CheckResult], out: TextIO) -> None:
    document = {"exit_status": exit_status(results),
                "checks": [asdict(result) for result in results]}
    print(json.dumps(document, indent=2), file=out)
