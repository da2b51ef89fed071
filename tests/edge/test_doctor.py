"""`vitrina-edge doctor`, judged by its exit status and its lines, on real set-ups: a bundle
enrolled on a Mosquitto with TLS and dynamic security, hostapd's control socket (a real
Unix datagram server answering as hostapd does), a private D-Bus without BlueZ, and the
files' real modes and owners."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dbus_fast import PropertyAccess
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, dbus_property

from edge.cli import main
from edge.doctor.core import DoctorContext, Outcome
from edge.doctor.host import check_disk
from edge.doctor.radios import check_wifi, parse_interface_info, parse_phy_info
from edge.outbox import Outbox
from edge.settings import load_settings
from provisioning.broker_security import BrokerFiles, DynsecAdmin
from provisioning.bundle import GatewayIdentity, render_edge_config
from provisioning.local_broker import free_port
from shared.pseudonym import TenantKey
from shared.status import GatewayStatus
from tests.edge.capture.test_hostapd import FakeHostapd

EXIT_READY, EXIT_WARNINGS, EXIT_BROKEN = 0, 1, 2
ME = getpass.getuser()
DBUS_DAEMON = shutil.which("dbus-daemon")


@dataclass(frozen=True, slots=True)
class Bundle:
    directory: Path
    config: Path
    hostapd: Path

    def rewrite(self, old: str, new: str) -> None:
        text = self.config.read_text()
        assert old in text, old
        self.config.write_text(text.replace(old, new))


@pytest.fixture
def quiet_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A device whose time service is systemd-timesyncd (its flag file says synchronized)
    and which runs no systemd: the clock and service lines do not depend on the machine
    the tests run on. Returns the flag file."""
    flag = tmp_path / "timesync-synchronized"
    flag.touch()
    monkeypatch.setattr("edge.doctor.host.TIMESYNC_FLAG", flag)
    monkeypatch.setattr("edge.doctor.host.SYSTEMD_RUNTIME", tmp_path / "no-systemd")
    monkeypatch.setenv("PATH", str(tmp_path / "no-commands"))
    return flag


@pytest.fixture
def bundle(secure_broker: BrokerFiles, mqtt_namespace: str, tmp_path: Path
           ) -> Iterator[Bundle]:
    """An enrolled gateway's bundle, as `vitrina-edge enrol` leaves it (0600 files in a 0700
    directory), with hostapd as its capture source and a hostapd answering."""
    with DynsecAdmin(host="localhost", port=secure_broker.port, admin=secure_broker.admin,
                     ca_file=secure_broker.ca_certificate) as control:
        credentials = control.enrol_gateway(tenant=mqtt_namespace, store="s1", gateway="gw-1")
    directory = tmp_path / "etc-vitrina"
    directory.mkdir(mode=0o700)
    shutil.copyfile(secure_broker.ca_certificate, directory / "ca.crt")
    sockets = Path(tempfile.mkdtemp(prefix="hapd"))  # a socket path must stay short
    text = render_edge_config(
        identity=GatewayIdentity(mqtt_namespace, "s1", "gw-1"), credentials=credentials,
        broker_host="localhost", broker_port=secure_broker.port,
        tenant_keys=[TenantKey.from_text("k1", "5a" * 32)], ca_path=directory / "ca.crt",
        timezone="Europe/Madrid")
    text += "\n".join(["", "[sources.hostapd]", "enabled = true",
                       f'ctrl_path = "{sockets / "wlan0"}"', "",
                       "[outbox]", f'path = "{tmp_path / "state" / "outbox.db"}"', ""])
    config = directory / "edge.toml"
    config.write_text(text)
    for path in (config, directory / "ca.crt"):
        path.chmod(0o600)
    hostapd = FakeHostapd(sockets / "wlan0")
    hostapd.start()
    try:
        yield Bundle(directory, config, sockets / "wlan0")
    finally:
        hostapd.stop()
        shutil.rmtree(sockets, ignore_errors=True)


def doctor(capsys: pytest.CaptureFixture[str], config: Path, *args: str
           ) -> tuple[int, dict[str, str]]:
    """Run the command as an operator would; its exit status and its line per check."""
    status = main(["doctor", "--config", str(config), "--service-user", ME, "--timeout", "3",
                   *args])
    out = capsys.readouterr().out
    lines = {}
    for line in out.splitlines()[:-1]:
        _outcome, name, *_ = line.split()
        lines[name] = line
    assert out.splitlines()[-1].endswith(f"(exit {status})")
    return status, lines


def test_an_enrolled_gateway_is_ready(
    capsys: pytest.CaptureFixture[str], bundle: Bundle, quiet_host: Path
) -> None:
    status, lines = doctor(capsys, bundle.config)
    assert status == EXIT_READY, "\n".join(lines.values())
    assert lines["config"].startswith("ok    config")
    assert "sources hostapd" in lines["config"]
    assert lines["bundle"].startswith(f"ok    bundle   edge.toml, ca.crt: readable by {ME}")
    assert "certificate trusted until" in lines["broker"]
    assert lines["login"].startswith("ok    login    the broker accepted the login as gw.")
    assert "systemd-timesyncd" in lines["clock"]
    assert lines["hostapd"].startswith("ok    hostapd  hostapd answers on")
    assert lines["ble"] == "skip  ble      not enabled ([sources.ble] enabled = false)"
    assert lines["service"].startswith("skip  service  systemd is not running here")
    assert lines["disk"].startswith("ok    disk")

    quiet_host.unlink()  # no time service says anything: the gateway runs, with a warning
    status, lines = doctor(capsys, bundle.config)
    assert status == EXIT_WARNINGS
    assert lines["clock"].startswith("WARN  clock    cannot tell whether the clock is "
                                     "synchronized")
    assert "fix: install and enable a time service" in lines["clock"]


def test_json_lists_every_check(
    capsys: pytest.CaptureFixture[str], bundle: Bundle, quiet_host: Path
) -> None:
    status = main(["doctor", "--config", str(bundle.config), "--service-user", ME, "--json"])
    document = json.loads(capsys.readouterr().out)
    assert status == document["exit_status"] == EXIT_READY
    assert [check["check"] for check in document["checks"]] == [
        "config", "bundle", "broker", "login", "clock", "ble", "wifi", "hostapd", "disk",
        "service"]
    assert {check["outcome"] for check in document["checks"]} == {"ok", "skip"}


def test_secrets_readable_by_everyone_and_a_missing_ca_fail(
    capsys: pytest.CaptureFixture[str], bundle: Bundle, quiet_host: Path
) -> None:
    bundle.config.chmod(0o644)
    (bundle.directory / "ca.crt").unlink()
    status, lines = doctor(capsys, bundle.config)
    assert status == EXIT_BROKEN
    bundle_line = lines["bundle"]
    assert bundle_line.startswith("FAIL  bundle")
    assert (f"{bundle.config} holds secrets and every user of the device can read it "
            "(mode 0644)") in bundle_line
    assert f"broker CA certificate {bundle.directory / 'ca.crt'} is missing" in bundle_line
    assert f"fix: chmod o-rwx {bundle.config}; put it back from the bundle, or enrol again" \
        in bundle_line
    assert lines["broker"].startswith("FAIL  broker   cannot load the TLS files of [mqtt]")
    assert lines["login"] == "skip  login    needs the broker check to pass first"


def test_a_bundle_the_service_user_cannot_read_fails(
    capsys: pytest.CaptureFixture[str], bundle: Bundle, quiet_host: Path
) -> None:
    """`sudo vitrina-edge enrol` leaves root's files; the agent runs as another user."""
    status, lines = doctor(capsys, bundle.config, "--service-user", "nobody")
    assert status == EXIT_BROKEN
    # The first directory on the way that nobody may enter (here pytest's own, 0700)
    assert lines["bundle"].startswith("FAIL  bundle   nobody cannot enter /")
    assert f"so the agent cannot read {bundle.config}" in lines["bundle"]
    assert "fix: chown -R nobody: /" in lines["bundle"]


def test_an_unreachable_broker_and_a_wrong_password_fail(
    capsys: pytest.CaptureFixture[str], bundle: Bundle, quiet_host: Path,
    secure_broker: BrokerFiles,
) -> None:
    bundle.rewrite(f"port = {secure_broker.port}", f"port = {free_port()}")
    status, lines = doctor(capsys, bundle.config)
    assert status == EXIT_BROKEN
    assert "nothing accepts connections at localhost:" in lines["broker"]
    assert "(refused) -- fix: check that the broker runs" in lines["broker"]
    assert lines["login"].startswith("skip  login")

    bundle.rewrite("port = ", f"port = {secure_broker.port}\n# port = ")
    password = next(line for line in bundle.config.read_text().splitlines()
                    if line.startswith("password = "))
    bundle.rewrite(password, 'password = "not-the-password"')
    status, lines = doctor(capsys, bundle.config)
    assert status == EXIT_BROKEN
    assert lines["broker"].startswith("ok    broker")
    assert "FAIL  login    the broker refused the login as gw." in lines["login"]
    assert ": Not authorized -- fix:" in lines["login"]  # what Mosquitto says to a bad password
    assert "if this gateway was revoked or replaced, enrol again" in lines["login"]


def test_a_config_that_does_not_load_stops_the_checks_that_need_it(
    capsys: pytest.CaptureFixture[str], bundle: Bundle, quiet_host: Path
) -> None:
    bundle.rewrite("[identity]", "[identity]\nshop = 3")
    status, lines = doctor(capsys, bundle.config)
    assert status == EXIT_BROKEN
    assert "does not load: identity.shop: Extra inputs are not permitted" in lines["config"]
    assert lines["broker"] == "skip  broker   the config did not load"
    assert lines["clock"].startswith("ok    clock")  # needs no config
    missing, lines = doctor(capsys, bundle.directory / "nothing.toml")
    assert missing == EXIT_BROKEN
    assert "fix: enrol this gateway: vitrina-edge enrol" in lines["config"]


def test_the_running_agents_heartbeat_stands_for_the_login(
    capsys: pytest.CaptureFixture[str], bundle: Bundle, quiet_host: Path,
    mqtt_namespace: str,
) -> None:
    """A second login with the pinned client id would cut the agent off: its heartbeat,
    recorded in the outbox seconds ago, proves the login instead."""
    settings = load_settings(bundle.config, env={})
    settings.outbox.path.parent.mkdir()
    outbox = Outbox(settings.outbox.path, max_events=100)
    outbox.record_status(GatewayStatus(tenant=mqtt_namespace, store="s1", gateway="gw-1",
                                       online=True, sent_at=datetime.now(UTC)
                                       ).model_dump_json())
    outbox.close()
    bundle.rewrite("password = ", 'password = "wrong"\n# password = ')
    status, lines = doctor(capsys, bundle.config)
    assert status == EXIT_READY
    assert "the running agent is connected as gw." in lines["login"]
    assert "not logging in a second time" in lines["login"]


@contextlib.contextmanager
def private_bus(directory: Path) -> Iterator[str]:
    """A dbus-daemon of our own, on which nothing (no BlueZ) has a name."""
    address = f"unix:path={directory / 'bus'}"
    assert DBUS_DAEMON is not None
    daemon = subprocess.Popen([DBUS_DAEMON, "--session", "--nofork", "--nopidfile",
                               f"--address={address}", "--print-address"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert daemon.stdout is not None
        assert daemon.stdout.readline().startswith("unix:path=")
        yield address
    finally:
        daemon.terminate()
        daemon.wait(10)


class Adapter(ServiceInterface):
    """BlueZ's org.bluez.Adapter1, the properties the doctor reads; dbus-fast's own object
    manager lists it, as bluetoothd's does."""

    def __init__(self, *, powered: bool) -> None:
        super().__init__("org.bluez.Adapter1")
        self.powered = powered

    @dbus_property(access=PropertyAccess.READ)
    def Powered(self) -> "b":  # type: ignore[name-defined]  # noqa: F821, N802, UP037
        return self.powered

    @dbus_property(access=PropertyAccess.READ)
    def Discovering(self) -> "b":  # type: ignore[name-defined]  # noqa: F821, N802, UP037
        return False


@contextlib.contextmanager
def bluez_named(address: str, adapters: dict[str, bool]) -> Iterator[None]:
    """`org.bluez` on the bus at `address` with these adapters (name: powered), served from
    a thread of its own while the doctor asks."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def serve() -> MessageBus:
        bus = await MessageBus(bus_address=address).connect()
        for name, powered in adapters.items():
            bus.export(f"/org/bluez/{name}", Adapter(powered=powered))
        await bus.request_name("org.bluez")
        return bus

    def run() -> None:
        asyncio.set_event_loop(loop)
        holder.append(loop.run_until_complete(serve()))
        ready.set()
        loop.run_forever()

    holder: list[MessageBus] = []
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(holder[0].disconnect)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_bluetooth_without_dbus_or_bluez_fails_clearly(
    capsys: pytest.CaptureFixture[str], bundle: Bundle, quiet_host: Path,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    bundle.rewrite("[sources.hostapd]", "[sources.ble]\nenabled = true\n\n[sources.hostapd]")
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    status, lines = doctor(capsys, bundle.config)
    assert status == EXIT_BROKEN
    assert f"FAIL  ble      no D-Bus system bus at unix:path={tmp_path / 'no-bus'}" \
        in lines["ble"]
    assert "BlueZ cannot be reached -- fix: apt-get install dbus bluez" in lines["ble"]

    with private_bus(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        status, lines = doctor(capsys, bundle.config)
        assert status == EXIT_BROKEN
        assert lines["ble"] == ("FAIL  ble      bluetoothd is not running (org.bluez is not "
                                "on the system bus) -- fix: systemctl enable --now bluetooth")
        with bluez_named(address, {"hci0": False}):
            status, lines = doctor(capsys, bundle.config)
        assert status == EXIT_BROKEN
        assert lines["ble"].startswith("FAIL  ble      adapter hci0 is off -- fix: rfkill "
                                       "unblock bluetooth; bluetoothctl power on")
        with bluez_named(address, {"hci0": True}):
            status, lines = doctor(capsys, bundle.config)
    # a BlueZ without advertisement monitors: the agent would scan actively
    assert status == EXIT_WARNINGS
    assert lines["ble"].startswith("WARN  ble      adapter hci0 is on; BlueZ offers no passive "
                                   "scanning, so the agent falls back to active scanning")
    assert "not discovering now -- fix: start bluetoothd with --experimental" in lines["ble"]


def test_a_hostapd_that_is_gone_fails(
    capsys: pytest.CaptureFixture[str], bundle: Bundle, quiet_host: Path
) -> None:
    bundle.hostapd.unlink()
    status, lines = doctor(capsys, bundle.config)
    assert status == EXIT_BROKEN
    assert lines["hostapd"].startswith(f"FAIL  hostapd  no hostapd control socket at "
                                       f"{bundle.hostapd} -- fix: start hostapd")


# ---- the Wi-Fi interface and the disk, from what the system reports -------------------

#: `iw dev wlan1mon info` and an excerpt of `iw phy phy1 info` on a Raspberry Pi with a
#: USB adapter (regulatory domain ES: channel 14 disabled).
IW_DEV_INFO = """Interface wlan1mon
\tifindex 5
\twdev 0x100000002
\taddr 00:c0:ca:00:00:01
\ttype monitor
\twiphy 1
\tchannel 6 (2437 MHz), width: 20 MHz (no HT), center1: 2437 MHz
\ttxpower 20.00 dBm
"""
IW_PHY_INFO = """Wiphy phy1
\tmax # scan SSIDs: 4
\tSupported interface modes:
\t\t * IBSS
\t\t * managed
\t\t * AP
\t\t * monitor
\tBand 1:
\t\tFrequencies:
\t\t\t* 2412 MHz [1] (20.0 dBm)
\t\t\t* 2437 MHz [6] (20.0 dBm)
\t\t\t* 2462 MHz [11] (20.0 dBm)
\t\t\t* 2484 MHz [14] (disabled)
\tSupported commands:
\t\t * new_interface
"""


def test_iw_answers_are_read() -> None:
    assert parse_interface_info(IW_DEV_INFO) == (1, "monitor")
    capabilities = parse_phy_info(IW_PHY_INFO)
    assert capabilities.modes == {"ibss", "managed", "ap", "monitor"}
    assert capabilities.channels == {1: True, 6: True, 11: True, 14: False}


def test_a_missing_monitor_interface_fails(bundle: Bundle) -> None:
    bundle.rewrite("[sources.hostapd]", '[sources.wifi_monitor]\nenabled = true\n'
                   'iface = "vitrina-none0"\n\n[sources.hostapd]')
    context = DoctorContext(bundle.config, load_settings(bundle.config, env={}))
    result = check_wifi(context)
    assert result.outcome is Outcome.FAIL
    assert result.message.startswith("there is no interface vitrina-none0")
    assert result.fix is not None
    assert "type monitor" in result.fix


def test_an_outbox_that_would_outgrow_the_disk_warns(bundle: Bundle) -> None:
    free = os.statvfs(bundle.directory).f_bavail * os.statvfs(bundle.directory).f_frsize
    events = free // 700 * 2
    bundle.rewrite("[outbox]", f"[outbox]\nmax_events = {events}")
    context = DoctorContext(bundle.config, load_settings(bundle.config, env={}),
                            service_user=ME)
    result = check_disk(context)
    assert result.outcome is Outcome.WARN
    assert f"a full outbox ({events:,} events" in result.message
    assert result.fix is not None
    assert result.fix.startswith("lower [outbox].max_events")
