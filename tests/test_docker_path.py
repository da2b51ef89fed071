"""docker/README.md from a fresh checkout, run command by command as far as no Docker engine
is needed: the `vitrina-provision` steps for real, the broker's container played by the same
start script and configuration on a real Mosquitto that drops root as the image's does, and
for each `docker compose` step a check that what it needs is there."""

from __future__ import annotations

import ast
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from typer.main import get_command

from cloud.api.places import router as places_router
from cloud.cli import app as cloud_cli
from cloud.settings import Settings
from provisioning.broker_security import plugin_path
from provisioning.cli import build_parser
from provisioning.cli import main as provision
from provisioning.local_broker import (
    BrokerStartError,
    free_port,
    launch_broker,
    mosquitto_binary,
    stop_process,
)
from tests.docker_path import (
    DOCKER,
    README,
    certificate_names,
    command_lines,
    commands,
    compose,
    compose_commands,
    is_setting,
    option_values,
    read_env_file,
)
from tests.docs.snippets import ROOT, snippet

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: The user the eclipse-mosquitto image's broker drops to (uid 1883 there); Debian's
#: package makes one of the same name here.
BROKER_USER = "mosquitto"
#: A user that is neither root nor the broker's, standing for the admin's own.
ADMIN_USER = "nobody"
#: Where the compose file mounts the admin's broker files into the broker's container.
CONTAINER_BROKER_FILES = "/vitrina/broker"


def _compose_service(line: list[str]) -> tuple[str, list[str]]:
    """(verb, its arguments) of a `docker compose -f docker/compose.yaml ...` command."""
    assert line[:4] == ["docker", "compose", "-f", "docker/compose.yaml"], line
    assert (ROOT / line[3]).is_file()
    return line[4], line[5:]


def _run_shell(text: str, cwd: Path) -> None:
    """A documented shell command, as bash runs it, stopping at the first that fails."""
    subprocess.run(["bash", "-euc", text], cwd=cwd, check=True, timeout=30)


def _run_provision(line: list[str], *, port: int) -> None:
    """A documented `vitrina-provision` command, in this process (as its console script
    would run it), dialling the stand-in broker's port instead of the published 8883."""
    assert line[0] == "vitrina-provision"
    arguments = line[1:]
    if arguments[0] != "broker-init":
        arguments += ["--broker-port", str(port)]
    assert provision(arguments) == 0, shlex.join(line)


def _broker_config(*, port: int, secrets: Path, data: Path) -> str:
    """docker/mosquitto/mosquitto.conf with the container's paths moved under `secrets` and
    `data`, on a loopback port, and this machine's plugin."""
    config = (DOCKER / "mosquitto" / "mosquitto.conf").read_text()
    config = config.replace("/mosquitto/secrets", str(secrets))
    config = config.replace("/mosquitto/data", str(data))
    config = re.sub(r"^listener 8883$", f"listener {port} 127.0.0.1", config, flags=re.M)
    return re.sub(r"^plugin \S+$", f"plugin {plugin_path()}", config, flags=re.M)


def _start_broker_container(broker_files: Path, container: Path, port: int,
                            ) -> subprocess.Popen[bytes]:
    """What `docker compose up mosquitto` starts: the compose file's entrypoint and command,
    on the admin's broker files, with the container's directories moved under `container`."""
    service = compose()["services"]["mosquitto"]
    assert service["entrypoint"] == ["/bin/sh", "/vitrina/start-broker.sh"]
    assert f"./secrets/broker:{CONTAINER_BROKER_FILES}:ro" in service["volumes"]
    secrets, data = container / "secrets", container / "data"
    config = container / "mosquitto.conf"
    config.write_text(_broker_config(port=port, secrets=secrets, data=data))
    config.chmod(0o644)
    binary = mosquitto_binary()
    assert binary is not None
    command = service["command"]
    assert command[0] == "/usr/sbin/mosquitto"
    assert command[1:] == ["-c", "/mosquitto/config/mosquitto.conf"]
    moved = [f"VITRINA_BROKER_FILES={broker_files}", f"VITRINA_BROKER_SECRETS={secrets}",
             f"VITRINA_BROKER_DATA={data}"]
    log = container / "broker.log"
    try:
        return launch_broker(
            ["env", *moved, "sh", str(DOCKER / "mosquitto" / "start-broker.sh"),
             binary, "-c", str(config)], port=port, log_path=log)
    except BrokerStartError:
        pytest.fail(f"the broker did not start: {log.read_text()}")


@pytest.fixture
def checkout(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory standing for the checkout's root (the commands' working directory),
    which the broker's user may enter, as it may /mosquitto in its container."""
    root = Path(tempfile.mkdtemp(prefix="vitrina-docker-path-"))
    root.chmod(0o755)
    monkeypatch.chdir(root)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _needs_root_and_mosquitto() -> None:
    if os.geteuid() != 0:
        pytest.skip("the broker's start script chowns files to its user: run as root (CI is)")
    try:
        pwd.getpwnam(BROKER_USER)
        pwd.getpwnam(ADMIN_USER)
        plugin_path()
    except (KeyError, FileNotFoundError):
        pytest.skip("Mosquitto is not installed (scripts/ensure-system-packages)")
    if mosquitto_binary() is None or shutil.which("mosquitto_ctrl") is None:
        pytest.skip("Mosquitto is not installed (scripts/ensure-system-packages)")


def test_the_documented_path_from_a_fresh_checkout(checkout: Path, tmp_path: Path) -> None:
    """Steps 2 to 5 and the gateway's enrolment, in the README's order; a stale host name,
    file mode, setting or mount breaks it here rather than at an admin's third command."""
    _needs_root_and_mosquitto()
    port = free_port()
    container = checkout / "container"
    container.mkdir(mode=0o755)
    secrets = checkout / "docker" / "secrets"

    # 2. The broker's secrets, by an admin whose umask lets nobody else read anything.
    umask = os.umask(0o077)
    try:
        for text, words in zip(command_lines("docker-broker-init"),
                               commands("docker-broker-init"), strict=True):
            if words[0] == "vitrina-provision":
                _run_provision(words, port=port)
            else:
                _run_shell(text, checkout)
    finally:
        os.umask(umask)
    broker = secrets / "broker"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    # Made by an admin's own user (here `nobody`), as often as by root: the broker's
    # container must cope with either owner.
    admin = pwd.getpwnam(ADMIN_USER)
    for path in [secrets, broker, *broker.iterdir()]:
        os.chown(path, admin.pw_uid, admin.pw_gid)
    admin_files = {path.name: path.stat() for path in broker.iterdir()}

    # 3. The broker's container, then the orchestrator's logins through it.
    up, *logins = commands("docker-broker-logins")
    verb, arguments = _compose_service(up)
    assert verb == "up"
    assert arguments[-1] == "mosquitto"
    process = _start_broker_container(broker, container, port)
    try:
        for login in logins:
            _run_provision(login, port=port)
        _check_broker_container(broker, container, admin_files)
        orchestrator_env = secrets / "orchestrator.env"
        assert stat.S_IMODE(orchestrator_env.stat().st_mode) == 0o600

        # 4. The orchestrator's secrets and settings, with a stand-in service-account key.
        key = tmp_path / "service-account.json"
        key.write_text('{"type": "service_account", "project_id": "my-shop-app"}')
        key.chmod(0o600)
        _run_shell("umask 077\n" + snippet(README, "docker-settings-vars").text
                   + f"FCM_KEY={key}\n"
                   + snippet(README, "docker-cloud-secrets").text, checkout)
        _check_cloud_secrets(secrets)

        # A gateway's bundle, with the tenant's key of step 4.
        for enrol in commands("docker-enrol-gateway"):
            _run_provision(enrol, port=port)
        bundle = Path(option_values("docker-enrol-gateway", "--out")[0])
        assert (checkout / bundle / "edge.toml").is_file()
    finally:
        stop_process(process)

    # 5. `docker compose up`: every file the compose file hands a service has been made.
    [start_all] = commands("docker-up")
    assert _compose_service(start_all)[0] == "up"
    _check_compose_inputs_exist(checkout)
    _check_certificate_names(broker)


def _check_broker_container(broker: Path, container: Path,
                            admin_files: dict[str, os.stat_result]) -> None:
    """The broker read its key as its own user, keeps its logins in the data volume, and
    left the admin's files as they were (owner, mode, content)."""
    user = pwd.getpwnam(BROKER_USER)
    key = container / "secrets" / "server.key"
    assert (key.stat().st_uid, stat.S_IMODE(key.stat().st_mode)) == (user.pw_uid, 0o600)
    logins = container / "data" / "dynamic-security.json"
    assert logins.stat().st_uid == user.pw_uid
    assert "orchestrator-ingest" in logins.read_text()
    for path in broker.iterdir():
        if path.name in admin_files:
            before, after = admin_files[path.name], path.stat()
            assert (after.st_uid, after.st_mode, after.st_mtime_ns) == (
                before.st_uid, before.st_mode, before.st_mtime_ns), path.name
    assert "orchestrator-ingest" not in (broker / "dynamic-security.json").read_text()


def _check_cloud_secrets(secrets: Path) -> None:
    """The env files name real settings only, and with the TOML make valid settings whose
    files are where the containers mount them, readable by the orchestrator's user."""
    environment: dict[str, str] = {}
    for env_file in compose()["x-cloud"]["env_file"]:
        values = read_env_file(secrets.parent / env_file)
        unknown = sorted(name for name in values if not is_setting(name))
        assert unknown == [], f"{env_file}: not settings: {unknown}"
        environment.update(values)
    settings = _settings(environment)
    assert settings.mqtt.host == "mosquitto"
    assert settings.mqtt.tls
    tenant = settings.tenant("demo")
    assert tenant is not None
    assert tenant.webhook_secrets
    assert settings.webhook_secrets_for("demo") == [
        (secrets / "webhook-demo.secret").read_text().strip()]
    assert tenant.keys[0].secret.get_secret_value() == (
        secrets / "tenant-demo-k1.key").read_text().strip()
    push = settings.channels["push"]
    assert push.project_id == "my-shop-app"
    assert settings.tracking.public_base_url == "http://localhost:8000"
    assert settings.channels["web_push"].subject == "mailto:ops@example.com"
    for path in (push.credentials_file, settings.mqtt.ca_file):
        host_path = _mounted_from(path)
        assert host_path is not None, f"{path} is not mounted into the cloud services"
        mode = stat.S_IMODE((secrets.parent / host_path).stat().st_mode)
        assert mode & 0o004, f"{host_path}: the orchestrator's user (uid 10001) cannot read it"
    assert stat.S_IMODE((secrets / "cloud.env").stat().st_mode) == 0o600
    assert stat.S_IMODE((secrets / "tenant-demo-k1.key").stat().st_mode) == 0o600


def _settings(environment: dict[str, str]) -> Settings:
    saved = dict(os.environ)
    try:
        for name in [name for name in os.environ if name.startswith("VITRINA_")]:
            del os.environ[name]
        os.environ.update(environment)
        os.environ["VITRINA_CONFIG"] = str(DOCKER / "cloud.toml")
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _mounted_from(container_path: str | None) -> Path | None:
    """The host path (relative to docker/) that the cloud services see at `container_path`."""
    if container_path is None:
        return None
    for volume in compose()["x-cloud"]["volumes"]:
        source, target = volume.split(":")[:2]
        if container_path == target or container_path.startswith(f"{target}/"):
            return Path(source) / Path(container_path).relative_to(target)
    return None


def _check_compose_inputs_exist(checkout: Path) -> None:
    """Every env file and every secrets mount a service has was made by a step above."""
    docker = checkout / "docker"
    for name, service in compose()["services"].items():
        for env_file in service.get("env_file", []):
            assert (docker / env_file).is_file(), f"{name}: {env_file} is made by no step"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./secrets/"):
                assert (docker / source).exists(), f"{name}: {source} is made by no step"


def _check_certificate_names(broker: Path) -> None:
    """The broker's certificate is valid for every name it is dialled by: the README's
    commands, the orchestrator's `mqtt.host` and the gateways' public host."""
    toml = tomllib.loads((DOCKER / "cloud.toml").read_text())
    dialled = {toml["mqtt"]["host"],
               *option_values("docker-broker-logins", "--broker-host"),
               *option_values("docker-enrol-gateway", "--broker-host"),
               *option_values("docker-enrol-gateway", "--public-host")}
    assert dialled <= certificate_names(broker / "server.crt")
    assert set(option_values("docker-broker-init", "--hostname")) == certificate_names(
        broker / "server.crt")


def test_provision_installs_with_what_its_commands_import() -> None:
    """The documented install (`pipx install './[provision]'`, or the wheel with the same
    extra) brings every package `vitrina-provision` imports."""
    installs = " ".join(command_lines("docker-install-provision")
                        + command_lines("docker-install-wheel"))
    extras = set(re.findall(r"\[(\w+)\]", installs))
    assert extras == {"provision"}
    project = PYPROJECT["project"]
    assert project["scripts"]["vitrina-provision"] == "provisioning.cli:main"
    installed = {_distribution(requirement) for requirement in
                 [*project["dependencies"], *project["optional-dependencies"]["provision"]]}
    imported = _third_party_imports(ROOT / "provisioning", skip={"amqtt_broker.py"})
    modules_of = {"paho": "paho-mqtt", "cryptography": "cryptography", "pydantic": "pydantic"}
    assert {modules_of.get(module, module) for module in imported} <= installed
    assert "mosquitto" in command_lines("docker-install-provision")[0]


def test_the_provision_options_the_readme_names_in_passing_exist() -> None:
    """Options named in the README's text, outside its blocks, are the commands' own."""
    text = (DOCKER / "README.md").read_text()
    assert "`--plugin PATH`" in text
    assert build_parser().parse_args(
        ["broker-init", "dir", "--hostname", "h", "--plugin", "/p.so"]).plugin == "/p.so"
    [second] = re.findall(r"`(add-orchestrator [^`]*)`", text)
    parsed = build_parser().parse_args(
        [*shlex.split(second), "--broker-dir", "d", "--out", "o"])
    assert parsed.no_config_publisher


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=\[;! ]", requirement, maxsplit=1)[0]


def _third_party_imports(package: Path, *, skip: set[str]) -> set[str]:
    """Top-level modules imported by the package's files, less the standard library and
    the project's own packages."""
    ours = {"provisioning", "shared", "cloud", "edge"}
    found: set[str] = set()
    for path in package.glob("*.py"):
        if path.name in skip:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return {module for module in found
            if module not in sys.stdlib_module_names and module not in ours
            and module != "__future__"}


def test_compose_steps_name_services_and_commands_that_exist() -> None:
    """Each `docker compose` step names the compose file, a real verb and real services;
    the cloud image's commands in them are `vitrina-cloud` subcommands; the first API call
    is a route the API serves."""
    services = compose()["services"]
    for snippet_id in ("docker-broker-logins", "docker-up", "docker-logs",
                       "docker-keys-create", "docker-keys-bootstrap", "docker-api-env"):
        for line in compose_commands(snippet_id):
            verb, arguments = _compose_service(line)
            assert verb in {"up", "logs", "restart", "run"}, line
            named = [word for word in arguments if word in services]
            if verb != "up" or named:
                assert named, f"{snippet_id}: names no service: {line}"
    mosquitto = services["mosquitto"]
    assert mosquitto["image"].startswith("eclipse-mosquitto:2")
    assert "8883:8883" in mosquitto["ports"]
    for volume in mosquitto["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./") and not source.startswith("./secrets/"):
            assert (DOCKER / source).is_file(), source
    made = []
    for snippet_id in ("docker-keys-create", "docker-keys-bootstrap", "docker-api-env",
                       "docker-customer-token"):
        for line in compose_commands(snippet_id):
            if "run" not in line:
                continue
            words = line[line.index("api") + 1:]
            _check_cloud_command(snippet_id, words)
            made.append(words)
    roles = [line[line.index("--role") + 1] for line in made if "--role" in line]
    assert roles == ["admin", "app"]
    assert ["customer-tokens", "keygen"] in [line[:2] for line in made]
    # The variables the first call and the quickstart's steps use are the ones set here.
    exported = set(re.findall(r"\b(VITRINA_[A-Z_]+)", snippet(README, "docker-api-env").text))
    assert {"VITRINA_API_URL", "VITRINA_TENANT", "VITRINA_ADMIN_KEY", "VITRINA_APP_KEY",
            "VITRINA_WEBHOOK_SECRET"} <= exported
    assert "webhook-demo.secret" in snippet(README, "docker-cloud-secrets").text
    [curl] = commands("docker-first-call")
    url = curl[-1]
    assert url.startswith("http://localhost:8000/tenants/demo/")
    routes = {(route.path, method) for route in places_router.routes
              if isinstance(route, APIRoute) for method in route.methods or ()}
    assert ("/" + url.split("/tenants/demo/", 1)[1], "GET") in routes


def test_the_readme_says_what_the_images_and_the_compose_file_do() -> None:
    """The user the README makes the orchestrator's files readable for is the cloud image's,
    the port its URLs use is the one the API listens on and compose publishes, and the
    broker's user is the one the start script hands the key to."""
    text = (DOCKER / "README.md").read_text()
    dockerfile = (DOCKER / "Dockerfile.cloud").read_text()
    uid = re.search(r"useradd .*--uid (\d+) .*\b(\w+)$", dockerfile, re.M)
    assert uid is not None
    assert re.search(rf"^USER {uid.group(2)}$", dockerfile, re.M)
    assert f"uid {uid.group(1)}" in text
    assert re.search(r"^EXPOSE 8000$", dockerfile, re.M)
    assert "8000:8000" in compose()["services"]["api"]["ports"]
    toml = tomllib.loads((DOCKER / "cloud.toml").read_text())
    assert toml["api"]["port"] == 8000
    urls = set(re.findall(r"https?://localhost:(\d+)", text))
    assert urls == {"8000"}
    assert 'user=${VITRINA_BROKER_USER:-mosquitto}' in (
        DOCKER / "mosquitto" / "start-broker.sh").read_text()
    assert "uid 1883" in text


def _check_cloud_command(snippet_id: str, words: list[str]) -> None:
    """`words` (after the service's name in `docker compose run ... api`) are a
    `vitrina-cloud` command with options it accepts."""
    command: Any = get_command(cloud_cli)
    # Typer's own copy of click: its groups and errors are not `click`'s classes.
    while hasattr(command, "commands"):
        name, *words = words
        assert name in command.commands, f"{snippet_id}: no command {name}"
        command = command.commands[name]
    try:
        command.make_context(command.name, list(words))
    except Exception as error:  # a usage error, whichever click raised it
        pytest.fail(f"{snippet_id}: {command.name} {shlex.join(words)}: {error}")
