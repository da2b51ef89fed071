"""Node.js for the web client's tests: the interpreter, and the packages web/package.json
pins (TypeScript), installed from its lock file when they are missing or stale."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
#: What `npm ci` leaves behind: a copy of the lock it installed (npm's own record).
INSTALLED_LOCK = WEB / "node_modules" / ".package-lock.json"


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("Node.js is needed for the web client's tests (it is part of the machine "
                    "image; Debian's package is nodejs)")
    return found


def web_packages_installed() -> bool:
    """Whether web/node_modules holds what web/package-lock.json pins (no network needed)."""
    lock = WEB / "package-lock.json"
    return INSTALLED_LOCK.exists() and INSTALLED_LOCK.stat().st_mtime >= lock.stat().st_mtime


def ensure_web_packages() -> None:
    """`npm ci` in web/ unless its packages are installed already (`make test` does the
    same before the suite; this is for a test run on its own)."""
    if web_packages_installed():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed to install the web client's dev packages (web/package.json)")
    run = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, f"npm ci in web/ failed:\n{run.stdout}{run.stderr}"


def tsc() -> Path:
    """The TypeScript compiler web/package.json pins."""
    ensure_web_packages()
    return WEB / "node_modules" / "typescript" / "bin" / "tsc"
