"""A fresh Debian root for the installer's test, and the wheels it installs from.

The root is made once with debootstrap and kept in the cache (`~/.cache/vitrina/`, or
`$XDG_CACHE_HOME/vitrina/`), under a name that carries a hash of everything it is made
from (suite, architecture, mirror, packages, this recipe's version): change one and a new
root is made. A test never changes it: it works on an overlay of it (`Overlay`), whose
upper layer is the test's own, and every command runs in a mount namespace of its own,
so the overlay, /proc, /dev and /sys end with the command and nothing is left mounted on
the machine whatever happens to the test.

The wheels: the agent's dependencies (the `edge` extra) downloaded from PyPI once per
dependency list and architecture, and the vitrina wheel built from this checkout for each
run; the installer then installs with `--no-index`, as on a gateway with a local
wheelhouse.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
VARIANT = "minbase"
#: What Raspberry Pi OS Lite has and a minimal root lacks: systemd, and curl for the one
#: command (`curl ... | sudo sh`). Everything else the agent needs is the installer's to add.
INCLUDE = ("systemd", "curl")
#: Raised when the way a root is made changes, so that cached roots are made anew.
RECIPE = 1
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: Debian's names for the machines the tests may install on, and Python's platform tags.
ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}
#: The Python of bookworm, whose wheels the wheelhouse holds.
PYTHON_VERSION = "3.11"
#: The whole environment of a command in the root: nothing of this machine's (its pip
#: settings, its virtual environment) leaks in.
ROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}


def cache_directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vitrina"


def host_arch() -> str:
    machine = platform.machine()
    for debian, python in ARCHES.items():
        if python == machine:
            return debian
    raise RuntimeError(f"no Debian name for this machine's architecture {machine!r}")


def debian_mirror() -> str:
    """The mirror this machine's apt uses for bookworm (its sources), unless
    VITRINA_DEBIAN_MIRROR names another."""
    chosen = os.environ.get("VITRINA_DEBIAN_MIRROR")
    if chosen:
        return chosen.rstrip("/")
    sources = Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in path.read_text().split("\n\n"):
            fields: dict[str, str] = dict(
                re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.MULTILINE))
            suites = fields.get("Suites", "").split()
            if fields.get("Types", "deb").split()[0] == "deb" and SUITE in suites:
                return fields["URIs"].split()[0].rstrip("/")
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[-3 if words[1].startswith("[") else 1].rstrip("/")
    return DEFAULT_MIRROR


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One maker at a time (two test processes asking for the same cache entry)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _short_hash(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class RootRecipe:
    arch: str
    mirror: str

    @property
    def name(self) -> str:
        key = _short_hash({"suite": SUITE, "variant": VARIANT, "include": INCLUDE,
                           "arch": self.arch, "mirror": self.mirror, "recipe": RECIPE})
        return f"debootstrap-{SUITE}-{self.arch}-{key}"

    @property
    def foreign(self) -> bool:
        return self.arch != host_arch()


def foreign_arch_problem(arch: str) -> str | None:
    """Why binaries of `arch` cannot run here, or None: qemu-user-static registered
    with binfmt_misc (and its fix-binary flag, so a chroot needs no copy of qemu)."""
    entry = Path(f"/proc/sys/fs/binfmt_misc/qemu-{ARCHES[arch]}")
    if not Path("/proc/sys/fs/binfmt_misc/status").exists():
        return "binfmt_misc is not mounted (mount -t binfmt_misc binfmt_misc " \
               "/proc/sys/fs/binfmt_misc)"
    if not entry.exists():
        return f"no binfmt_misc entry {entry.name}: install qemu-user-static"
    text = entry.read_text()
    if "enabled" not in text.splitlines()[0]:
        return f"{entry} is disabled"
    if "F" not in next((line for line in text.splitlines() if line.startswith("flags:")), ""):
        return f"{entry} lacks the fix-binary flag (F)"
    return None


def ensure_root(recipe: RootRecipe) -> Path:
    """The cached root for `recipe`, made first if it is not there (debootstrap)."""
    cache = cache_directory() / "debootstrap"
    target = cache / recipe.name
    with _locked(cache / f"{recipe.name}.lock"):
        if target.is_dir():
            return target
        debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
        if not Path(debootstrap).exists():
            raise RuntimeError("debootstrap is not installed: `scripts/ensure-system-packages "
                               "--install-test` installs it (make test-install does)")
        partial = cache / f"{recipe.name}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        subprocess.run(
            [debootstrap, f"--variant={VARIANT}", f"--arch={recipe.arch}",
             f"--include={','.join(INCLUDE)}", SUITE, str(partial), recipe.mirror],
            check=True, capture_output=True, text=True, env=ROOT_ENV | {"DEBIAN_FRONTEND":
                                                                        "noninteractive"})
        # What an installed system has and debootstrap leaves out.
        (partial / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost\n")
        (partial / "etc" / "hostname").write_text("gateway\n")
        for path in (partial / "var" / "cache" / "apt" / "archives").glob("*.deb"):
            path.unlink()
        partial.rename(target)
        return target


def edge_requirements() -> list[str]:
    """What `vitrina[edge]` depends on, from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements: list[str] = [*project["dependencies"],
                               *project["optional-dependencies"]["edge"]]
    return requirements


def ensure_wheelhouse(arch: str) -> Path:
    """The agent's dependencies as wheels for bookworm's Python on `arch`: downloaded
    from PyPI once per list of requirements."""
    requirements = edge_requirements()
    cache = cache_directory() / "wheelhouse"
    name = f"{SUITE}-{arch}-{_short_hash({'requirements': requirements, 'arch': arch})}"
    target = cache / name
    with _locked(cache / f"{name}.lock"):
        if target.is_dir():
            return target
        partial = cache / f"{name}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        machine = ARCHES[arch]
        platforms = [f"manylinux_2_{minor}_{machine}" for minor in (36, 34, 28, 17)]
        platforms += [f"manylinux2014_{machine}", f"linux_{machine}"]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--only-binary=:all:", "--implementation=cp", f"--python-version={PYTHON_VERSION}",
             *(f"--platform={tag}" for tag in platforms), "--dest", str(partial),
             *requirements],
            check=True, capture_output=True, text=True)
        partial.rename(target)
        return target


#: Not part of the source a wheel is built from.
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
              ".hypothesis", ".demo", "node_modules")


def build_vitrina_wheel(directory: Path) -> Path:
    """The vitrina wheel of this checkout, as it is now. Built from a copy: setuptools
    builds in the source tree, and would leave its build/ there (whose stale files a later
    wheel would take in)."""
    source = directory / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--wheel-dir", str(directory), str(source)],
        check=True, capture_output=True, text=True)
    shutil.rmtree(source)
    (wheel,) = directory.glob("vitrina-*.whl")
    return wheel


#: Run as `sh -c MOUNT_AND_CHROOT sh LOWER UPPER WORK MERGED APT_CACHE SCRIPT` inside a
#: new mount namespace: mounts the overlay and what a system needs, then runs SCRIPT in the
#: root. An empty /run: systemd is installed but not running (as in any chroot). APT_CACHE
#: (where apt keeps the packages it downloaded, kept between runs) may be empty: the
#: root's own then, which has none.
MOUNT_AND_CHROOT = r"""
set -e
mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"
mount -t proc proc "$4/proc"
mount --bind /dev "$4/dev"
mount --bind /sys "$4/sys"
mount -t tmpfs tmpfs "$4/run"
mount -t tmpfs tmpfs "$4/tmp"
[ -z "$5" ] || mount --bind "$5" "$4/var/cache/apt/archives"
cp /etc/resolv.conf "$4/etc/resolv.conf"
exec chroot "$4" /bin/sh -c "$6"
"""


class Overlay:
    """A root of one's own over a cached one: every change lands in `directory`."""

    def __init__(self, lower: Path, directory: Path, *, apt_cache: Path) -> None:
        self.lower = lower
        self.upper = directory / "upper"
        self.work = directory / "work"
        self.merged = directory / "merged"
        self.apt_cache = apt_cache
        for path in (self.upper, self.work, self.merged, apt_cache / "partial"):
            path.mkdir(parents=True, exist_ok=True)

    def put(self, path: str, source: Path) -> None:
        """Copy `source` (a file or a directory) into the root at `path`."""
        target = self.upper / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(source, target)

    def run(self, script: str, *, timeout: float = 600, env: dict[str, str] | None = None,
            apt_cache: bool = True) -> subprocess.CompletedProcess[str]:
        """`script` run by /bin/sh as root in the root; its exit code and output. Without
        `apt_cache`, apt finds no package it downloaded before."""
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             MOUNT_AND_CHROOT, "sh", str(self.lower), str(self.upper), str(self.work),
             str(self.merged), str(self.apt_cache) if apt_cache else "", script],
            capture_output=True, text=True, timeout=timeout, check=False,
            env=ROOT_ENV | (env or {}), stdin=subprocess.DEVNULL)


#: Run as `sh -c MOUNT_AND_BOOT sh LOWER UPPER WORK MERGED` in a new mount namespace: the
#: overlay booted by systemd-nspawn, systemd as its PID 1. The machine's network is shared
#: (the agent reaches the test's broker on localhost); CAP_NET_ADMIN is given, as a Pi has
#: it, for the unit's AmbientCapabilities. Not registered with machined: the machine need
#: not run systemd.
MOUNT_AND_BOOT = r"""
set -e
mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"
exec systemd-nspawn --quiet --register=no --keep-unit --capability=CAP_NET_ADMIN \
    --directory="$4" --boot
"""
#: How long a root takes to boot, or to power off.
BOOT_WAIT_S = 60.0


def _container_init(nspawn: int) -> int | None:
    """The PID (here) of the container's PID 1: a descendant of `nspawn` that is 1 in
    its own PID namespace."""
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                          if ":\t" in line)
            pids = fields.get("NSpid", "").split()
            if len(pids) >= 2 and pids[-1] == "1":
                pid = int(pids[0])
                parent = int(fields["PPid"])
                while parent > 1:
                    if parent == nspawn:
                        return pid
                    parent = int(Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1]
                                 .split()[1])
    return None


class Booted:
    """A root booted with systemd as its PID 1; commands run inside it."""

    def __init__(self, init: int) -> None:
        self.init = init

    def run(self, script: str, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", f"--target={self.init}", "--mount", "--uts", "--ipc", "--pid", "--",
             "/bin/sh", "-c", script],
            capture_output=True, text=True, timeout=timeout, check=False, env=ROOT_ENV,
            stdin=subprocess.DEVNULL)

    def wait_until_running(self) -> str:
        """systemd's state once the boot is done: `running`, or `degraded` when a unit
        failed (what fails in a container without radios, say); else the last one seen."""
        deadline = time.monotonic() + BOOT_WAIT_S
        state = ""
        while time.monotonic() < deadline:
            state = self.run("systemctl is-system-running").stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.5)
        return state


@contextlib.contextmanager
def booted(overlay: Overlay, log: Path) -> Iterator[Booted]:
    """`overlay` booted (systemd-nspawn --boot); powered off on exit, killed if it will
    not. Its console goes to `log`."""
    with log.open("w") as console:
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             MOUNT_AND_BOOT, "sh", str(overlay.lower), str(overlay.upper),
             str(overlay.work), str(overlay.merged)],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            env=ROOT_ENV, start_new_session=True)
    init = None
    try:
        deadline = time.monotonic() + BOOT_WAIT_S
        while init is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            init = _container_init(process.pid)
        if init is None:
            raise RuntimeError(f"systemd-nspawn did not boot the root: {log.read_text()}")
        yield Booted(init)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # nspawn: power the container off
            try:
                process.wait(timeout=BOOT_WAIT_S)
            except subprocess.TimeoutExpired:
                if init is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(init, signal.SIGKILL)  # its PID namespace ends with it
                process.kill()
                process.wait(timeout=BOOT_WAIT_S)
