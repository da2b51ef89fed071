"""`vitrina-edge enrol`: exchange a one-time enrolment code for this gateway's identity.

The cloud answers `POST /enrol` with the files of the gateway's bundle (its config with
its broker login and the tenant's keys, and the broker's CA). They hold secrets, so they
are written readable by their owner only (files 0600 in a 0700 directory), or by their
owner and the agent's group where the agent runs under its own user (files 0640 in a 0750
directory, group `vitrina-edge`: the systemd unit's), each through a temporary file
renamed into place, so a crash leaves the old bundle or the new one and never half of one.

Before asking, the gateway makes its own X25519 key pair: the public part goes with the
code, the private part stays here (`seal.key`, beside the config, which names it). The
cloud seals the tenant keys of later rotations to it (`shared.sealing`), so they can
travel in the gateway's config through the broker without the broker reading them.

Only HTTPS carries the code and the bundle, except to this machine itself (loopback),
where nothing crosses a network.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edge.private_files import PRIVATE_FILE_MODE, write_private
from shared.sealing import new_private_key, private_key_pem, public_key_text
from shared.topics import SEGMENT_PATTERN

#: What the cloud answers within; a gateway on a slow uplink still gets there.
REQUEST_TIMEOUT_S = 30.0
BUNDLE_FILE_MODE = PRIVATE_FILE_MODE
BUNDLE_DIRECTORY_MODE = 0o700
#: The group the systemd unit runs the agent as (provisioning/systemd/vitrina-edge.service):
#: where it exists, the bundle is made readable to it, and to nobody else.
AGENT_GROUP = "vitrina-edge"
GROUP_FILE_MODE = 0o640
GROUP_DIRECTORY_MODE = 0o750
CONFIG_FILE = "edge.toml"
#: This gateway's private sealing key: made here, never sent anywhere.
SEAL_KEY_FILE = "seal.key"
#: A bundle is a config file and a certificate: nothing else may be written by it.
BUNDLE_FILES = frozenset({CONFIG_FILE, "ca.crt"})


class EnrolmentRefusedError(Exception):
    """The cloud refused the code (wrong, used, expired, revoked) or asked to wait."""


class CloudUnreachableError(Exception):
    """The cloud could not be reached or could not enrol now; trying again may work."""


class EnrolmentUsageError(Exception):
    """The command cannot run as asked (an address, an existing bundle)."""


@dataclass(frozen=True, slots=True)
class Enrolled:
    tenant: str
    store: str
    gateway: str
    config: Path


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def enrol_url(cloud: str) -> str:
    """`<cloud>/enrol`; EnrolmentUsageError for an address the code must not be sent to."""
    parts = urlsplit(cloud)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise EnrolmentUsageError(f"--cloud must be an https:// address, not {cloud!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise EnrolmentUsageError(
            "--cloud must be an https:// address: the code and the gateway's keys must not "
            "cross the network in the clear")
    return cloud.rstrip("/") + "/enrol"


def _detail(error: urllib.error.HTTPError) -> str:
    with contextlib.suppress(ValueError, AttributeError, OSError):
        detail = json.loads(error.read()).get("detail")
        if isinstance(detail, str):
            return detail
    return f"HTTP {error.code}"


def request_bundle(cloud: str, *, code: str, directory: Path, ca_file: Path | None,
                   seal_public_key: str | None = None) -> object:
    """POST the code (and this gateway's public sealing key); the cloud's answer, or the
    error that says what to do."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    request_body: dict[str, str] = {"code": code, "directory": str(directory)}
    if seal_public_key is not None:
        request_body["seal_public_key"] = seal_public_key
    body = json.dumps(request_body).encode()
    request = urllib.request.Request(
        enrol_url(cloud), data=body, method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S, context=context
                                    ) as response:
            answer: object = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as error:
        if error.code in (403, 429):
            raise EnrolmentRefusedError(_detail(error)) from None
        if error.code == 404:
            raise CloudUnreachableError(
                f"{cloud} has no enrolment service (HTTP 404): is it the orchestrator's "
                "address?") from None
        raise CloudUnreachableError(f"the cloud could not enrol this gateway: "
                                    f"{_detail(error)}") from None
    except (urllib.error.URLError, OSError, ValueError, RecursionError) as error:
        reason = getattr(error, "reason", error)
        raise CloudUnreachableError(f"cannot reach {cloud}: {reason}") from None


def agent_group(name: str | None = None) -> int | None:
    """The id of group `name`, or of the agent's group where it exists (None if not).
    EnrolmentUsageError for a `name` this machine has no group of."""
    try:
        return grp.getgrnam(name or AGENT_GROUP).gr_gid
    except KeyError:
        if name is None:
            return None
        raise EnrolmentUsageError(f"there is no group {name!r} on this machine") from None


def _bundle_directory(directory: Path, group: int | None) -> None:
    mode = BUNDLE_DIRECTORY_MODE if group is None else GROUP_DIRECTORY_MODE
    directory.mkdir(mode=mode, parents=True, exist_ok=True)
    if group is not None:
        os.chown(directory, -1, group)
    directory.chmod(mode)


def _write_bundle_file(path: Path, text: str, *, group: int | None) -> None:
    write_private(path, text, mode=BUNDLE_FILE_MODE if group is None else GROUP_FILE_MODE,
                  group=group)


def write_bundle(directory: Path, files: dict[str, str], *, group: int | None = None) -> Path:
    """Write the bundle's files, readable by their owner and by `group` if given; the
    config's path."""
    unexpected = set(files) - BUNDLE_FILES
    if unexpected or CONFIG_FILE not in files:
        raise CloudUnreachableError("the cloud's answer is not a gateway bundle")
    _bundle_directory(directory, group)
    for name, text in files.items():
        _write_bundle_file(directory / name, text, group=group)
    return directory / CONFIG_FILE


def write_seal_key(directory: Path, pem: str, *, group: int | None = None) -> Path:
    """Write the private sealing key (before the config that names it), readable like the
    bundle (the agent opens the keys sealed to it); its path."""
    _bundle_directory(directory, group)
    path = directory / SEAL_KEY_FILE
    _write_bundle_file(path, pem, group=group)
    return path


def enrol(cloud: str, *, code: str, directory: Path, ca_file: Path | None, force: bool,
          group: int | None = None) -> Enrolled:
    """Exchange `code` for the bundle and write it into `directory`, readable by `group`
    too if given. An existing bundle is kept unless `force`: checked before the code is
    sent, so a refusal costs no code."""
    directory = directory.absolute()
    if (directory / CONFIG_FILE).exists() and not force:
        raise EnrolmentUsageError(
            f"a bundle is already in {directory}: this gateway is enrolled (use --force to "
            "replace it with a new identity)")
    seal_key = new_private_key()
    answer = request_bundle(cloud, code=code, directory=directory, ca_file=ca_file,
                            seal_public_key=public_key_text(seal_key))
    identity, files = read_answer(answer)
    write_seal_key(directory, private_key_pem(seal_key), group=group)
    config = write_bundle(directory, files, group=group)
    return Enrolled(*identity, config=config)


def read_answer(answer: object) -> tuple[tuple[str, str, str], dict[str, str]]:
    """The gateway's (tenant, store, gateway) and its bundle's files from the cloud's
    answer; CloudUnreachableError for anything else (whatever JSON came back)."""
    if not isinstance(answer, dict):
        raise CloudUnreachableError("the cloud's answer is not a gateway bundle")
    files = answer.get("files")
    names = tuple(answer.get(part) for part in ("tenant", "store", "gateway"))
    if (not isinstance(files, dict)
            or not all(isinstance(name, str) and isinstance(text, str)
                       for name, text in files.items())
            or set(files) - BUNDLE_FILES or CONFIG_FILE not in files
            or not all(isinstance(name, str) and SEGMENT_PATTERN.fullmatch(name)
                       for name in names)):
        raise CloudUnreachableError("the cloud's answer is not a gateway bundle")
    tenant, store, gateway = (str(name) for name in names)
    return (tenant, store, gateway), files
