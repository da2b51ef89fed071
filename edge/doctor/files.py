"""The config and the bundle's files: does the config load, and are its secrets safe and
readable by the agent.

Permissions are judged from the mode bits and owners of each file and of every directory
above it, for the service user (the agent runs as `vitrina-edge`, not as whoever runs the
doctor, usually root). POSIX ACLs are not read: a file that only an ACL lets the agent
read is reported as unreadable.
"""

from __future__ import annotations

import grp
import os
import pwd
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edge.doctor.core import CheckResult, DoctorContext, fail, ok, warn
from edge.settings import EdgeSettings, SettingsError, load_settings

#: Secrets may come from here instead of the TOML file (the unit's EnvironmentFile).
ENV_FILE = "edge.env"
ENROL_AGAIN = ("enrol again with a new code from the console: "
               "vitrina-edge enrol --force --code XXXX-XXXX --cloud https://...")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile reads them (comments, quotes)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        name, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def check_config(path: Path, env: Mapping[str, str] | None = None
                 ) -> tuple[CheckResult, EdgeSettings | None]:
    """The config parses and is valid (with the secrets of `edge.env` beside it, as the
    service gets them)."""
    if not path.exists():
        return fail("config", f"no config at {path}",
                    "enrol this gateway: vitrina-edge enrol --code XXXX-XXXX --cloud "
                    "https://... (or pass --config)"), None
    merged = {**(os.environ if env is None else env), **read_env_file(path.parent / ENV_FILE)}
    try:
        settings = load_settings(path, env=merged)
    except SettingsError as error:
        problems = "; ".join(error.problems[:3])
        more = f" (and {len(error.problems) - 3} more)" if len(error.problems) > 3 else ""
        return fail("config", f"{path} does not load: {problems}{more}",
                    f"correct {path} (vitrina-edge check-config lists every problem), "
                    f"or {ENROL_AGAIN}"), None
    identity = settings.identity
    enabled = [name for name, section in settings.sources if getattr(section, "enabled", False)]
    summary = (f"{path}: {identity.tenant}/{identity.store}/{identity.gateway}, "
               f"{len(settings.keys.key)} key(s), active {settings.keys.active}")
    if not enabled:
        return warn("config", f"{summary}; no capture source is enabled: the agent would "
                    "only send what its outbox holds",
                    f"enable a source in {path} ([sources.ble], [sources.wifi_monitor] or "
                    "[sources.hostapd]: enabled = true)"), settings
    return ok("config", f"{summary}; sources {', '.join(enabled)}"), settings


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    uid: int
    gids: frozenset[int]

    @classmethod
    def lookup(cls, name: str) -> Account | None:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        return cls(name, entry.pw_uid, frozenset(os.getgrouplist(name, entry.pw_gid)))

    def may(self, info: os.stat_result, bit: int) -> bool:
        """Whether the mode bits grant this account `bit` (4 read, 2 write, 1 search)."""
        if self.uid == 0:
            return bit != 1 or bool(info.st_mode & 0o111) or stat.S_ISDIR(info.st_mode)
        if info.st_uid == self.uid:
            return bool(info.st_mode & (bit << 6))
        if info.st_gid in self.gids:
            return bool(info.st_mode & (bit << 3))
        return bool(info.st_mode & bit)

    def can_reach(self, path: Path) -> Path | None:
        """The first directory above `path` this account cannot enter, or None."""
        for directory in reversed(path.absolute().parents):
            try:
                info = directory.stat()
            except OSError:
                return directory
            if not self.may(info, 1):
                return directory
        return None


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


@dataclass(frozen=True, slots=True)
class _Problem:
    failure: bool
    text: str
    fix: str


def bundle_files(settings: EdgeSettings, config: Path) -> list[tuple[Path, bool, str]]:
    """(path, holds a secret, what it is) for every file the agent reads at start."""
    mqtt = settings.mqtt
    files: list[tuple[Path, bool, str]] = [(config, True, "config (keys, broker password)")]
    env_file = config.parent / ENV_FILE
    if env_file.exists():
        files.append((env_file, True, "environment file (secrets)"))
    if mqtt.ca_file is not None:
        files.append((mqtt.ca_file, False, "broker CA certificate"))
    if mqtt.cert_file is not None:
        files.append((mqtt.cert_file, False, "client certificate"))
    if mqtt.key_file is not None:
        files.append((mqtt.key_file, True, "client private key"))
    if settings.keys.seal_key_file is not None:
        files.append((settings.keys.seal_key_file, True, "sealing key (opens delivered keys)"))
    return files


def _file_problems(path: Path, secret: bool, what: str, user: Account | None) -> list[_Problem]:
    try:
        info = path.stat()
    except FileNotFoundError:
        return [_Problem(True, f"{what} {path} is missing",
                         f"put it back from the bundle, or {ENROL_AGAIN}")]
    except OSError as error:
        return [_Problem(True, f"cannot look at {path}: {error.strerror}",
                         "run the doctor as root")]
    mode = stat.S_IMODE(info.st_mode)
    problems: list[_Problem] = []
    if mode & 0o002:
        problems.append(_Problem(True, f"{path} can be changed by every user (mode {mode:04o})",
                                 f"chmod o-w {path}"))
    if secret and mode & 0o004:
        problems.append(_Problem(True, f"{path} holds secrets and every user of the device "
                                 f"can read it (mode {mode:04o})", f"chmod o-rwx {path}"))
    if user is None:
        return problems
    if info.st_uid not in (0, user.uid):
        problems.append(_Problem(False, f"{path} is owned by {_owner(info.st_uid)}, neither "
                                 f"root nor {user.name}: that user can change it",
                                 f"chown {user.name}: {path}"))
    if secret and mode & 0o040 and info.st_gid != 0 and info.st_gid not in user.gids:
        problems.append(_Problem(False, f"{path} holds secrets and group "
                                 f"{_group(info.st_gid)} can read it", f"chmod g-rwx {path}"))
    blocked = user.can_reach(path)
    if blocked is not None:
        problems.append(_Problem(True, f"{user.name} cannot enter {blocked}, so the agent "
                                 f"cannot read {path}", f"chown -R {user.name}: {blocked}"))
    elif not user.may(info, 4):
        problems.append(_Problem(True, f"{user.name} cannot read {path} (owner "
                                 f"{_owner(info.st_uid)}, mode {mode:04o})",
                                 f"chown {user.name}: {path}"))
    return problems


def _ca_problem(path: Path) -> _Problem | None:
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, ValueError) as error:
        return _Problem(True, f"{path} is not a PEM certificate ({error})",
                        f"put the broker's CA certificate back, or {ENROL_AGAIN}")
    except OSError:
        return None  # missing or unreadable: said already
    return None


def check_bundle(context: DoctorContext) -> CheckResult:
    """Every file of the bundle is there, its secrets are not readable by other users, and
    the service user can read all of it."""
    settings = context.loaded
    user = Account.lookup(context.service_user)
    problems: list[_Problem] = []
    if user is None:
        problems.append(_Problem(False, f"there is no user {context.service_user} (the "
                                 "service runs as it), so who may read the files is not checked",
                                 f"useradd --system --no-create-home --shell /usr/sbin/nologin "
                                 f"{context.service_user} (or pass --service-user)"))
    files = bundle_files(settings, context.config_path)
    for path, secret, what in files:
        problems += _file_problems(path, secret, what, user)
    if settings.mqtt.ca_file is not None and (found := _ca_problem(settings.mqtt.ca_file)):
        problems.append(found)
    directory = context.config_path.parent
    try:
        mode = directory.stat().st_mode
        if mode & 0o002 and not mode & stat.S_ISVTX:  # sticky (/tmp): nobody replaces ours
            problems.append(_Problem(True, f"{directory} can be written by every user",
                                     f"chmod o-w {directory}"))
    except OSError:
        pass
    if not problems:
        names = ", ".join(path.name for path, _, _ in files)
        reader = f"readable by {user.name}" if user else "present"
        return ok("bundle", f"{names}: {reader}, secrets private")
    problems.sort(key=lambda problem: not problem.failure)
    message = "; ".join(problem.text for problem in problems)
    fixes = "; ".join(dict.fromkeys(problem.fix for problem in problems))
    if any(problem.failure for problem in problems):
        return fail("bundle", message, fixes)
    return warn("bundle", message, fixes)
