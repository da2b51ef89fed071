"""The gateway's installer's own checks, which run before it touches anything: options
and who runs it. What it installs is tested in a fresh Debian root
(tests/install/, `make test-install`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = ROOT / "provisioning" / "install" / "install-gateway.sh"
EXIT_USAGE, EXIT_NOT_ROOT = 2, 5


def installer(*args: str, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    command = ["sh", str(INSTALLER), *args]
    if as_nobody and os.geteuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False,
                          stdin=subprocess.DEVNULL)


def test_help_names_every_option() -> None:
    done = installer("--help")
    assert done.returncode == 0
    for option in ("--package", "--index-url", "--find-links", "--no-index", "--code",
                   "--cloud", "--ca-file", "--reenrol", "--uninstall", "--purge"):
        assert option in done.stdout, option


@pytest.mark.parametrize(("args", "message"), [
    (["--code", "ABCD-EFGH"], "--code needs --cloud"),
    (["--cloud", "https://cloud.example"], "--cloud goes with --code"),
    (["--purge"], "--purge goes with --uninstall"),
    (["--uninstall", "--code", "ABCD-EFGH"], "--uninstall takes no other option"),
    (["--reenrol"], "--reenrol needs --code"),
    (["--package"], "--package needs a value"),
    (["--code", "ABCD-EFGH", "--cloud", "https://c.example", "--ca-file", "/nonexistent"],
     "cannot read the CA file /nonexistent"),
    (["--frobnicate"], "unknown option: --frobnicate"),
])
def test_usage_errors_exit_2_and_say_what_is_wrong(args: list[str], message: str) -> None:
    done = installer(*args)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert message in done.stderr


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None,
                    reason="setpriv (util-linux) runs it as another user")
def test_it_needs_root_and_says_so_before_it_changes_anything() -> None:
    done = installer("--package", "vitrina", as_nobody=True)
    assert done.returncode == EXIT_NOT_ROOT
    assert "run this as root" in done.stderr
    assert done.stdout == ""
