"""The radios the config enables: the Bluetooth adapter through BlueZ's D-Bus API (with
dbus-fast, the library bleak uses), the Wi-Fi monitor interface through `iw` (read only:
nothing is switched, no channel is set, the capture is not disturbed), and hostapd's
control socket (a PING, which hostapd answers to any number of clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.doctor.core import CheckResult, DoctorContext, fail, ok, skip, warn
from edge.doctor.host import run_command

BLUEZ = "org.bluez"
ADAPTER = "org.bluez.Adapter1"
MONITOR_MANAGER = "org.bluez.AdvertisementMonitorManager1"
SYS_NET = Path("/sys/class/net")
IFF_UP = 0x1

# ---- Bluetooth ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BluezAdapter:
    name: str
    powered: bool
    discovering: bool
    #: Passive scanning needs BlueZ's advertisement monitor with "or_patterns".
    passive: bool


class BluezUnavailableError(Exception):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def _value(properties: dict[str, Any], name: str) -> Any:
    item = properties.get(name)
    return getattr(item, "value", item)


async def bluez_adapters(timeout_s: float) -> dict[str, BluezAdapter]:
    """BlueZ's adapters from its object manager, as bleak finds them."""
    from dbus_fast import BusType, Message, MessageType
    from dbus_fast.aio import MessageBus

    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS",
                             "unix:path=/var/run/dbus/system_bus_socket")
    try:
        bus = await asyncio.wait_for(MessageBus(bus_type=BusType.SYSTEM).connect(), timeout_s)
    except Exception as error:  # no socket, refused, auth: the bus is not usable
        raise BluezUnavailableError(
            f"no D-Bus system bus at {address} ({type(error).__name__}: {error}): BlueZ "
            "cannot be reached",
            "apt-get install dbus bluez; systemctl enable --now dbus bluetooth") from None
    try:
        reply = await asyncio.wait_for(bus.call(Message(
            destination=BLUEZ, path="/", interface="org.freedesktop.DBus.ObjectManager",
            member="GetManagedObjects")), timeout_s)
    except TimeoutError:
        raise BluezUnavailableError("BlueZ did not answer on the system bus within "
                                    f"{timeout_s:g} s", "systemctl restart bluetooth") from None
    finally:
        bus.disconnect()
    if reply is None or reply.message_type == MessageType.ERROR:
        name = reply.error_name if reply is not None else "no reply"
        if name in ("org.freedesktop.DBus.Error.ServiceUnknown",
                    "org.freedesktop.DBus.Error.NameHasNoOwner"):
            raise BluezUnavailableError("bluetoothd is not running (org.bluez is not on the "
                                        "system bus)", "systemctl enable --now bluetooth")
        if name == "org.freedesktop.DBus.Error.AccessDenied":
            raise BluezUnavailableError("the system bus refuses BlueZ to this user",
                                        "add the service user to group bluetooth")
        raise BluezUnavailableError(f"BlueZ answered {name}", "systemctl restart bluetooth")
    adapters: dict[str, BluezAdapter] = {}
    objects: dict[str, dict[str, dict[str, Any]]] = reply.body[0]
    for path, interfaces in objects.items():
        properties = interfaces.get(ADAPTER)
        if properties is None:
            continue
        monitor = interfaces.get(MONITOR_MANAGER) or {}
        types = _value(monitor, "SupportedMonitorTypes") or []
        adapters[path.rsplit("/", 1)[-1]] = BluezAdapter(
            name=path.rsplit("/", 1)[-1], powered=bool(_value(properties, "Powered")),
            discovering=bool(_value(properties, "Discovering")),
            passive="or_patterns" in types)
    return adapters


def check_ble(context: DoctorContext) -> CheckResult:
    """The adapter is there and powered; passive scanning is possible (else the fallback);
    and whether it is scanning now."""
    ble = context.loaded.sources.ble
    if not ble.enabled:
        return skip("ble", "not enabled ([sources.ble] enabled = false)")
    try:
        adapters = asyncio.run(bluez_adapters(context.timeout_s))
    except BluezUnavailableError as error:
        return fail("ble", str(error), error.fix)
    if not adapters:
        return fail("ble", "BlueZ sees no Bluetooth adapter",
                    "check rfkill list and dmesg | grep -i bluetooth; a USB adapter may need "
                    "plugging in again")
    name = ble.adapter or sorted(adapters)[0]
    adapter = adapters.get(name)
    if adapter is None:
        return fail("ble", f"no adapter {name} (BlueZ has {', '.join(sorted(adapters))})",
                    f'set [sources.ble] adapter = "{sorted(adapters)[0]}"')
    if not adapter.powered:
        return fail("ble", f"adapter {name} is off",
                    "rfkill unblock bluetooth; bluetoothctl power on (and AutoEnable=true in "
                    "/etc/bluetooth/main.conf, so it is on after a reboot)")
    scanning = _scanning_now(context, adapter)
    if ble.mode == "active":
        return ok("ble", f"adapter {name} is on; active scanning (as configured); {scanning}")
    if adapter.passive:
        return ok("ble", f"adapter {name} is on; passive scanning available; {scanning}")
    passive_fix = ("start bluetoothd with --experimental (a systemd drop-in for "
                   "bluetooth.service) so BlueZ offers advertisement monitors")
    if ble.mode == "passive":
        return fail("ble", f"adapter {name} is on, but BlueZ offers no passive scanning and "
                    "[sources.ble] mode = passive: the source cannot start",
                    f'{passive_fix}, or set mode = "auto"')
    return warn("ble", f"adapter {name} is on; BlueZ offers no passive scanning, so the agent "
                f"falls back to active scanning (phones see scan requests); {scanning}",
                passive_fix)


def _scanning_now(context: DoctorContext, adapter: BluezAdapter) -> str:
    agent = context.agent
    source = None
    if agent is not None and context.agent_connected():
        source = (agent.status.get("sources") or {}).get("ble")
    if isinstance(source, dict):
        state = "alive" if source.get("alive") else "down"
        return (f"the agent's BLE source is {state} with {source.get('frames', 0)} adverts "
                f"and {source.get('restarts', 0)} restarts")
    return "discovering now" if adapter.discovering else "not discovering now"


# ---- Wi-Fi monitor ------------------------------------------------------------------

_WIPHY = re.compile(r"^\s*wiphy (\d+)", re.MULTILINE)
_TYPE = re.compile(r"^\s*type (\S+)", re.MULTILINE)
_FREQUENCY = re.compile(r"^\s*\*\s*(\d+)(?:\.\d+)? MHz \[(\d+)\](.*)$", re.MULTILINE)


def parse_interface_info(text: str) -> tuple[int | None, str | None]:
    """`iw dev IFACE info`: (the phy number, the interface type)."""
    wiphy, kind = _WIPHY.search(text), _TYPE.search(text)
    return (int(wiphy.group(1)) if wiphy else None, kind.group(1) if kind else None)


@dataclass(frozen=True, slots=True)
class PhyCapabilities:
    modes: frozenset[str]
    #: Channel number -> usable (not disabled by the regulatory domain).
    channels: dict[int, bool]


def parse_phy_info(text: str) -> PhyCapabilities:
    """`iw phy phyN info`: its supported interface modes and its channels."""
    modes: set[str] = set()
    in_modes = False
    for line in text.splitlines():
        if "Supported interface modes:" in line:
            in_modes = True
            continue
        if in_modes:
            stripped = line.strip()
            if stripped.startswith("* "):
                modes.add(stripped[2:].strip().lower())
                continue
            in_modes = False
    channels: dict[int, bool] = {}
    for match in _FREQUENCY.finditer(text):
        channel = int(match.group(2))
        channels[channel] = channels.get(channel, False) or "disabled" not in match.group(3)
    return PhyCapabilities(frozenset(modes), channels)


def check_wifi(context: DoctorContext) -> CheckResult:
    """The monitor interface exists, is up and in monitor mode, and its radio can tune to
    every configured channel (read from `iw`, not tried)."""
    wifi = context.loaded.sources.wifi_monitor
    if not wifi.enabled:
        return skip("wifi", "not enabled ([sources.wifi_monitor] enabled = false)")
    iface = wifi.iface
    if not (SYS_NET / iface).exists():
        present = sorted(path.name for path in SYS_NET.iterdir()) if SYS_NET.exists() else []
        wireless = [name for name in present if (SYS_NET / name / "wireless").exists()
                    or (SYS_NET / name / "phy80211").exists()]
        seen = f" (wireless interfaces here: {', '.join(wireless)})" if wireless else ""
        return fail("wifi", f"there is no interface {iface}{seen}",
                    f"add it in monitor mode: iw phy phy0 interface add {iface} type monitor; "
                    f"ip link set {iface} up (or correct [sources.wifi_monitor].iface)")
    code, info = run_command(["iw", "dev", iface, "info"])
    if code == 127:
        return fail("wifi", "iw is not installed: the agent sets channels with it",
                    "apt-get install iw")
    if code != 0:
        return fail("wifi", f"iw cannot read {iface}: {info}",
                    f"is {iface} a wireless interface? (iw dev lists them)")
    phy, kind = parse_interface_info(info)
    if kind != "monitor":
        return fail("wifi", f"{iface} is in {kind or 'an unknown'} mode, not monitor: it "
                    "cannot hear other devices' probes",
                    f"ip link set {iface} down; iw dev {iface} set type monitor; "
                    f"ip link set {iface} up")
    try:
        flags = int((SYS_NET / iface / "flags").read_text().strip(), 16)
    except (OSError, ValueError):
        flags = IFF_UP
    if not flags & IFF_UP:
        return fail("wifi", f"{iface} is down", f"ip link set {iface} up")
    if phy is None:
        return warn("wifi", f"{iface} is in monitor mode; its radio could not be told from "
                    "iw's answer, so the channels are not checked", "iw dev " + iface + " info")
    code, phy_text = run_command(["iw", "phy", f"phy{phy}", "info"])
    capabilities = parse_phy_info(phy_text if code == 0 else "")
    unknown = [channel for channel in wifi.channels if channel not in capabilities.channels]
    disabled = [channel for channel in wifi.channels if capabilities.channels.get(channel) is False]
    if unknown or disabled:
        usable = sorted(channel for channel, on in capabilities.channels.items() if on)
        what = "; ".join(part for part in (
            unknown and f"channels {unknown} are not supported by phy{phy}",
            disabled and f"channels {disabled} are disabled here (regulatory domain)") if part)
        return fail("wifi", f"{iface} is in monitor mode, but {what}: hopping onto them fails",
                    f"set [sources.wifi_monitor].channels to usable ones (e.g. "
                    f"{usable[:3] or [1, 6, 11]}), or set the country: iw reg set XX")
    channels = ", ".join(str(channel) for channel in wifi.channels)
    return ok("wifi", f"{iface} (phy{phy}) is up in monitor mode and can tune to channels "
              f"{channels} (hopping itself is left to the agent: trying it would move the "
              "capture)")


# ---- hostapd -------------------------------------------------------------------------


def check_hostapd(context: DoctorContext) -> CheckResult:
    """hostapd's control socket is there and answers PING."""
    hostapd = context.loaded.sources.hostapd
    if not hostapd.enabled:
        return skip("hostapd", "not enabled ([sources.hostapd] enabled = false)")
    path = hostapd.ctrl_path
    fix_path = ("start hostapd (systemctl enable --now hostapd) and make its ctrl_interface "
                f"match [sources.hostapd].ctrl_path = {path}")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return fail("hostapd", f"no hostapd control socket at {path}", fix_path)
    except OSError as error:
        return fail("hostapd", f"cannot look at {path}: {error.strerror}",
                    "run the doctor as root or as the service user")
    if not stat.S_ISSOCK(mode):
        return fail("hostapd", f"{path} is not a socket", fix_path)
    local = Path(tempfile.gettempdir()) / f"vitrina-doctor-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        local.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(local))
        sock.settimeout(context.timeout_s)
        sock.connect(str(path))
        sock.send(b"PING")
        reply = sock.recv(4096).decode(errors="replace").strip()
    except PermissionError:
        return fail("hostapd", f"permission denied on {path}",
                    f"set ctrl_interface_group= in hostapd.conf to a group of "
                    f"{context.service_user} (e.g. netdev)")
    except ConnectionRefusedError:
        return fail("hostapd", f"{path} is there but hostapd does not listen on it (stale "
                    "socket)", "systemctl restart hostapd")
    except TimeoutError:
        return fail("hostapd", f"hostapd did not answer PING on {path} within "
                    f"{context.timeout_s:g} s", "systemctl restart hostapd")
    except OSError as error:
        return fail("hostapd", f"cannot talk to hostapd on {path}: {error}", fix_path)
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            local.unlink()
    if reply != "PONG":
        return fail("hostapd", f"hostapd answered PING with {reply[:40]!r}",
                    "check that the socket is hostapd's")
    return ok("hostapd", f"hostapd answers on {path}")
