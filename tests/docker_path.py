"""What the tests of docker/README.md share: its commands as a reader pastes them, the env
files as compose reads them, and what every `VITRINA_*` name must be (a real setting)."""

from __future__ import annotations

import re
import shlex
import typing
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from pydantic import BaseModel

from cloud.channels.registry import UnknownChannelError, adapter_for
from cloud.settings import CONFIG_FILE_VARIABLE, Settings, TenantSettings
from tests.docs.snippets import ROOT, snippet

README = "docker/README.md"
DOCKER = ROOT / "docker"
ENV_PREFIX = "VITRINA_"


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return document


def command_lines(snippet_id: str) -> list[str]:
    """The block's commands, one a line, continuation lines joined (as a shell reads them)."""
    text = snippet(README, snippet_id).text.replace("\\\n", " ")
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def commands(snippet_id: str) -> list[list[str]]:
    """The block's commands as argument lists."""
    return [shlex.split(line) for line in command_lines(snippet_id)]


def _compose_command(text: str) -> str:
    """From `docker compose` on, up to the end of its `$(...)`, a redirection or a pipe."""
    depth = 0
    for index, character in enumerate(text):
        if character == "(":
            depth += 1
        elif character == ")":
            if depth == 0:
                return text[:index]
            depth -= 1
        elif character in ">|" and depth == 0:
            return text[:index]
    return text


def compose_commands(snippet_id: str) -> list[list[str]]:
    """The block's `docker compose ...` commands, also those inside `$(...)`."""
    return [shlex.split(_compose_command(line[match.start():]))
            for line in command_lines(snippet_id)
            for match in re.finditer(r"docker compose ", line)]


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines as compose's `env_file` takes them (the value as written)."""
    found = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, separator, value = line.partition("=")
            assert separator, f"{path}: not KEY=VALUE: {line!r}"
            found[name.strip()] = value
    return found


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The settings model a field holds (unwrapping `X | None`), if it holds one."""
    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def is_setting(name: str) -> bool:
    """Whether the orchestrator reads `name`: the settings file's variable, or a
    `VITRINA_` path through the settings models (`__` between levels; the tenant's id
    and the channel's name are keys, each channel's fields its adapter's model's).
    pydantic-settings ignores a misspelt one silently, so this is checked here."""
    if name == CONFIG_FILE_VARIABLE:
        return True
    if not name.startswith(ENV_PREFIX):
        return False
    parts = name.removeprefix(ENV_PREFIX).lower().split("__")
    model: type[BaseModel] = Settings
    while parts:
        part = parts.pop(0)
        field = model.model_fields.get(part)
        if field is None:
            return False
        if not parts:
            return True
        if model is Settings and part == "channels":
            try:
                model = adapter_for(parts.pop(0)).settings_model
            except UnknownChannelError:
                return False
            continue
        if model is Settings and part == "tenants":
            parts.pop(0)
            model = TenantSettings
            continue
        nested = _nested_model(field.annotation)
        if nested is None:
            return False
        model = nested
    return True


def certificate_names(path: Path) -> set[str]:
    """The host names and addresses a server certificate is valid for."""
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*names.get_values_for_type(x509.DNSName),
            *(str(address) for address in names.get_values_for_type(x509.IPAddress))}


def option_values(snippet_id: str, option: str) -> list[str]:
    """Every value given to `option` in the block's commands."""
    return [command[index + 1] for command in commands(snippet_id)
            for index, word in enumerate(command) if word == option]
