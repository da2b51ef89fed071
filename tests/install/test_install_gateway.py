"""The gateway's installer in a fresh Debian bookworm root (debootstrap): the one command
(the script from the orchestrator, piped into sh) installs and enrols against a real
orchestrator over HTTPS, and run again changes nothing; the root then boots with systemd
as its PID 1 (systemd-nspawn) and the hardened unit runs the agent, which the orchestrator
hears; then uninstall takes it all away. Not in `make test` (a cold run makes the root
and downloads packages): `make test-install`, which CI runs after `make test`.

The installer runs in a chroot, where systemd is installed but not running, as in an
image being built: there the unit is checked as the package's, enabled (the symlink
systemd follows at boot) and accepted by `systemd-analyze verify`, and the agent's user
reads its config (check-config as `vitrina-edge`, the unit's ExecStartPre). Booted, the
service is active, its process is the agent's user's, its heartbeat reaches the
orchestrator through the test's broker, and powering off sends its offline status.

VITRINA_INSTALL_ARCHES=amd64,arm64 adds an arm64 root, run under qemu-user-static
(`make test-install ARCHES=amd64,arm64`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cloud.db import session_scope
from cloud.presence.models import GatewayHealth
from provisioning.broker_security import BrokerFiles
from tests.cloud.gateway_support import STORE, gateway_cloud_settings, https_api, make_cloud
from tests.cloud.running import running_worker, wait_for
from tests.docs.snippets import snippet
from tests.install.debian_root import (
    ARCHES,
    ROOT,
    SUITE,
    Overlay,
    RootRecipe,
    booted,
    build_vitrina_wheel,
    cache_directory,
    debian_mirror,
    ensure_root,
    ensure_wheelhouse,
    foreign_arch_problem,
    host_arch,
)

#: A cold run makes the root and downloads every package first; an arm64 root runs
#: under qemu. Bounded all the same.
pytestmark = [pytest.mark.install, pytest.mark.timeout(1800)]

INSTALLER = ROOT / "provisioning" / "install" / "install-gateway.sh"
UNIT = ROOT / "provisioning" / "systemd" / "vitrina-edge.service"
#: Where the test puts what it brings into the root.
BROUGHT = "/srv/vitrina-test"
WHEELS = f"{BROUGHT}/wheels"
CA = f"{BROUGHT}/cloud-ca.crt"
EXIT_USAGE, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_NOT_ROOT, EXIT_UNSUPPORTED = 2, 3, 4, 5, 6
ARCHES_ENV = "VITRINA_INSTALL_ARCHES"
#: What the installer may change, read before and after a second run.
STATE = (
    "sha256sum /etc/passwd /etc/group /etc/shadow /etc/gshadow "
    "/etc/systemd/system/vitrina-edge.service /etc/vitrina/*; "
    "stat -c '%n %U:%G %a' /etc/vitrina /etc/vitrina/* /opt/vitrina; "
    "ls /etc/systemd/system/multi-user.target.wants; "
    "/opt/vitrina/bin/python -m pip freeze --all"
)


@dataclass
class Gateway:
    """A fresh Debian root of its own, with the installer and the wheels in it."""

    arch: str
    root: Overlay
    wheel: str

    def run(self, script: str, *, apt_cache: bool = True, **env: str
            ) -> subprocess.CompletedProcess[str]:
        return self.root.run(script, env=env, apt_cache=apt_cache)

    def sh(self, script: str) -> str:
        """`script`'s output; it must succeed."""
        done = self.run(script)
        assert done.returncode == 0, f"{script}: {done.stdout}{done.stderr}"
        return done.stdout

    def install_command(self, *args: str) -> str:
        source = ("--package", self.wheel, "--find-links", WHEELS, "--no-index")
        return f"sh {BROUGHT}/install-gateway.sh {shlex.join([*source, *args])}"


def requested_arches() -> list[str]:
    return (os.environ.get(ARCHES_ENV) or host_arch()).replace(",", " ").split()


@pytest.fixture(params=sorted(ARCHES))
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    arch: str = request.param
    if arch not in requested_arches():
        pytest.skip(f"{arch} is not asked for: {ARCHES_ENV}={arch} (or make test-install "
                    f"ARCHES=...) adds it")
    if os.geteuid() != 0:
        pytest.fail("the installer's test runs as root: it makes chroots and mounts")
    recipe = RootRecipe(arch, debian_mirror())
    if recipe.foreign:
        problem = foreign_arch_problem(arch)
        if problem:
            pytest.fail(f"{arch} binaries cannot run here: {problem}")
    root = Overlay(ensure_root(recipe), tmp_path / "root",
                   apt_cache=cache_directory() / f"apt-archives-{SUITE}-{arch}")
    wheel = build_vitrina_wheel(tmp_path / "dist")
    root.put(WHEELS, ensure_wheelhouse(arch))
    root.put(f"{WHEELS}/{wheel.name}", wheel)
    root.put(f"{BROUGHT}/install-gateway.sh", INSTALLER)
    yield Gateway(arch, root, f"{WHEELS}/{wheel.name}")
    shutil.rmtree(tmp_path / "root")  # a root's worth of packages: not kept with the logs


def documented_install(*, url: str, code: str, wheel: str) -> str:
    """docs/operations.md's install command with this test's orchestrator, code and wheel
    (and the local package index, for a machine with no internet)."""
    text = snippet("docs/operations.md", "ops-install").text.replace("\\\n", " ")
    fetch, install = (shlex.split(half) for half in text.split("|"))
    assert fetch[:2] == ["curl", "-fsSL"], text
    assert install[:4] == ["sudo", "sh", "-s", "--"], text
    chosen = {"https://<orchestrator>/install/gateway.sh": f"{url}/install/gateway.sh",
              "https://<orchestrator>": url, "XXXX-XXXX": code}
    arguments = [wheel if word.endswith(".whl") else chosen.get(word, word)
                 for word in install[4:]]
    assert not [word for word in arguments if "<" in word], arguments
    return (f"{shlex.join([*fetch[:2], '--cacert', CA, chosen[fetch[2]]])} | sh -s -- "
            f"{shlex.join([*arguments, '--ca-file', CA, '--find-links', WHEELS, '--no-index'])}")


def test_refusals_come_before_any_change(gateway: Gateway) -> None:
    """Not root, no network, no agent to install, not bookworm: each has its exit code
    and changes nothing."""
    as_nobody = gateway.run(
        f"setpriv --reuid=65534 --regid=65534 --clear-groups {gateway.install_command()}")
    assert as_nobody.returncode == EXIT_NOT_ROOT, as_nobody.stderr
    assert "run this as root" in as_nobody.stderr

    # No network: nothing answers at the proxy, and no package downloaded before is there
    # (and apt does not retry each download with pauses, as it would on a real network).
    gateway.sh(f"echo 'Acquire::Retries \"0\";' > {BROUGHT}/no-retries.conf")
    offline = gateway.run(gateway.install_command(), http_proxy="http://127.0.0.1:9",
                          APT_CONFIG=f"{BROUGHT}/no-retries.conf", apt_cache=False)
    assert offline.returncode == EXIT_UNREACHABLE, offline.stdout + offline.stderr
    assert "cannot reach Debian's package mirror" in offline.stderr

    missing = gateway.run(gateway.install_command().replace(gateway.wheel, "/nowhere.whl"))
    assert missing.returncode == EXIT_USAGE, missing.stdout + missing.stderr
    assert "no such file: /nowhere.whl (--package)" in missing.stderr

    gateway.sh("sed -i 's/bookworm/trixie/' /usr/lib/os-release")
    other = gateway.run(gateway.install_command())
    assert other.returncode == EXIT_UNSUPPORTED, other.stderr
    assert "is not supported: this installer is for Debian 12 (bookworm)" in other.stderr

    assert gateway.sh("getent passwd vitrina-edge || ls /opt") == ""


@pytest.mark.parametrize("migrated_url", ["sqlite"], indirect=True)
def test_one_command_installs_and_enrols_again_changes_nothing_and_uninstall_removes_it(
    gateway: Gateway, engine: Engine, migrated_url: str, tenant: str,
    secure_broker: BrokerFiles, tmp_path: Path,
) -> None:
    settings = gateway_cloud_settings(tenant=tenant, database_url=migrated_url,
                                      files=secure_broker)
    with make_cloud(engine, settings, tenant) as cloud, \
            https_api(cloud.app, tmp_path) as (url, ca):
        gateway.root.put(CA, ca)
        code = cloud.add_gateway("gw-installed")["code"]
        enrolment = ("--code", code, "--cloud", url, "--ca-file", CA)

        # The one command, as docs/operations.md gives it: the script as the orchestrator
        # serves it, piped into sh (here as root already, trusting the test's CA).
        first = gateway.run(documented_install(url=url, code=code, wheel=gateway.wheel))
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"enrolled as {tenant}/{STORE}/gw-installed" in first.stdout
        assert "systemd is not running here: the agent starts at the next boot" in first.stdout
        assert_installed(gateway, identity=f"{tenant}/{STORE}/gw-installed")
        before = gateway.sh(STATE)

        again = gateway.run(gateway.install_command(*enrolment))
        assert again.returncode == 0, again.stdout + again.stderr
        assert "enrolled already" in again.stdout
        assert "Debian's packages are there" in again.stdout
        assert gateway.sh(STATE) == before

        # A spent code: refused, and the identity the gateway has stays.
        spent = gateway.run(gateway.install_command(*enrolment, "--reenrol"))
        assert spent.returncode == EXIT_REFUSED, spent.stdout + spent.stderr
        assert "the cloud refused the code" in spent.stderr
        assert gateway.sh(STATE) == before

        # Booted, with systemd as PID 1: the unit runs the agent as its user, the agent
        # reaches the broker with its bundle and the orchestrator hears its heartbeat;
        # powered off, the agent says it is going (its offline status).
        identity = (tenant, STORE, "gw-installed")
        with running_worker(cloud.settings, cloud.engine):
            with booted(gateway.root, tmp_path / "console.log") as machine:
                assert machine.wait_until_running() in ("running", "degraded")
                status = machine.run("systemctl status vitrina-edge").stdout
                assert machine.run("systemctl is-active vitrina-edge").stdout == "active\n", (
                    status)
                user = machine.run("stat -c %U /proc/$(systemctl show -p MainPID --value "
                                   "vitrina-edge)").stdout
                assert user == "vitrina-edge\n"
                # The command again, with systemd running: nothing changed, so the agent
                # is left running (the same process), not restarted.
                main_pid = "systemctl show -p MainPID --value vitrina-edge"
                pid = machine.run(main_pid).stdout
                rerun = machine.run(gateway.install_command(*enrolment))
                assert rerun.returncode == 0, rerun.stdout + rerun.stderr
                assert "the agent is running" in rerun.stdout
                assert machine.run(main_pid).stdout == pid
                wait_for(lambda: online(engine, identity) is True,
                         what="the gateway's heartbeat")
            wait_for(lambda: online(engine, identity) is False, what="the gateway's goodbye")

    uninstall, purge = (line.split("#")[0].replace("sudo sh install-gateway.sh",
                                                   f"sh {BROUGHT}/install-gateway.sh").strip()
                        for line in snippet("docs/operations.md", "ops-uninstall")
                        .text.splitlines())
    for _ in range(2):  # uninstalling what is uninstalled is no error either
        removed = gateway.run(uninstall)
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert_uninstalled(gateway)
        assert gateway.sh("stat -c '%U:%G' /etc/vitrina/edge.toml") == "root:root\n"
    assert "--purge deletes them" in removed.stdout

    purged = gateway.run(purge)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    for gone in ("/etc/vitrina", "/var/lib/vitrina"):
        assert gateway.run(f"test -e {gone}").returncode != 0, gone


def online(engine: Engine, identity: tuple[str, str, str]) -> bool | None:
    """What the orchestrator last heard from the gateway: online, offline or nothing."""
    tenant, store, gateway = identity
    with session_scope(engine) as session:
        health = session.get(GatewayHealth, (tenant, store, gateway))
        return None if health is None else health.online


def assert_installed(gateway: Gateway, *, identity: str) -> None:
    assert "usage: vitrina-edge" in gateway.sh("/opt/vitrina/bin/vitrina-edge --help")
    assert gateway.sh("grep -c '^vitrina-edge:' /etc/passwd") == "1\n"
    assert gateway.sh("grep -c '^vitrina-edge:' /etc/group") == "1\n"
    assert gateway.sh("id -nG vitrina-edge").split() == ["vitrina-edge", "bluetooth", "netdev"]
    for group in ("bluetooth", "netdev"):
        assert gateway.sh(f"getent group {group}").strip().endswith(":vitrina-edge"), group

    assert gateway.sh("cat /etc/systemd/system/vitrina-edge.service") == UNIT.read_text()
    assert gateway.sh("systemctl is-enabled vitrina-edge") == "enabled\n"
    verified = gateway.run("systemd-analyze verify /etc/systemd/system/vitrina-edge.service")
    problems = [line for line in verified.stderr.splitlines() if "vitrina-edge" in line]
    assert problems == [], verified.stderr

    assert gateway.sh("stat -c '%n %U:%G %a' /etc/vitrina /etc/vitrina/*").splitlines() == [
        "/etc/vitrina root:vitrina-edge 750",
        "/etc/vitrina/ca.crt root:vitrina-edge 640",
        "/etc/vitrina/edge.toml root:vitrina-edge 640",
        "/etc/vitrina/seal.key root:vitrina-edge 640",  # opens the keys sealed to it
    ]
    # The unit's ExecStartPre, as the unit's user: the agent reads its identity.
    checked = gateway.sh("runuser -u vitrina-edge -- /opt/vitrina/bin/vitrina-edge "
                         "check-config --config /etc/vitrina/edge.toml")
    assert checked.startswith(f"OK: {identity}, "), checked
    assert gateway.run("runuser -u nobody -- cat /etc/vitrina/edge.toml").returncode != 0


def assert_uninstalled(gateway: Gateway) -> None:
    assert gateway.sh("grep -c vitrina-edge /etc/passwd /etc/group || true") == (
        "/etc/passwd:0\n/etc/group:0\n")
    for gone in ("/etc/systemd/system/vitrina-edge.service",
                 "/etc/systemd/system/multi-user.target.wants/vitrina-edge.service"):
        assert gateway.run(f"test -e {gone} || test -L {gone}").returncode != 0, gone
    assert gateway.sh("ls -A /opt") == ""
