"""`vitrina-edge doctor`: checks that the gateway can run, one line each with a fix.

The checks, in order: the config, the bundle's files, the broker (TLS), the login, the
clock, the Bluetooth adapter, the Wi-Fi monitor interface, hostapd's control socket,
disk space for the outbox and the systemd service. docs/operations.md ("Reading the
doctor") explains each line. Exit status: `core.EXIT_READY` (0), `core.EXIT_WARNINGS`
(1), `core.EXIT_BROKEN` (2).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from edge.doctor.core import (
    DEFAULT_SERVICE_USER,
    DEFAULT_TIMEOUT_S,
    DEFAULT_UNIT,
    EXIT_BROKEN,
    EXIT_READY,
    EXIT_WARNINGS,
    Check,
    CheckResult,
    DoctorContext,
    Outcome,
    exit_status,
    read_agent_report,
    render,
    render_json,
    run_checks,
)
from edge.doctor.files import check_bundle, check_config
from edge.doctor.host import check_clock, check_disk, check_service
from edge.doctor.network import check_broker, check_login
from edge.doctor.radios import check_ble, check_hostapd, check_wifi

CHECKS: tuple[Check, ...] = (
    Check("bundle", check_bundle),
    Check("broker", check_broker),
    Check("login", check_login, needs=("broker",)),
    Check("clock", check_clock, needs_settings=False),
    Check("ble", check_ble),
    Check("wifi", check_wifi),
    Check("hostapd", check_hostapd),
    Check("disk", check_disk),
    Check("service", check_service, needs_settings=False),
)


def diagnose(
    config_path: Path, *, service_user: str = DEFAULT_SERVICE_USER, unit: str = DEFAULT_UNIT,
    timeout_s: float = DEFAULT_TIMEOUT_S, env: Mapping[str, str] | None = None,
) -> list[CheckResult]:
    """Every check's result, the config's first."""
    loaded, settings = check_config(config_path, env)
    agent, outbox_error = (None, None) if settings is None else read_agent_report(settings)
    context = DoctorContext(config_path=config_path, settings=settings,
                            service_user=service_user, unit=unit, timeout_s=timeout_s,
                            outbox_error=outbox_error, agent=agent)
    return run_checks(context, CHECKS, [loaded])


__all__ = [
    "CHECKS",
    "EXIT_BROKEN",
    "EXIT_READY",
    "EXIT_WARNINGS",
    "CheckResult",
    "Outcome",
    "diagnose",
    "exit_status",
    "render",
    "render_json",
]
