"""Broker credentials and access control with Mosquitto's dynamic-security plugin.

Every gateway gets its own username, password and role: it may publish presence, status
and occupancy on its own topics and read its own config topic, nothing else. A stolen
gateway therefore cannot speak for another store or read anyone's presence. The
orchestrator's role reads presence, status and occupancy everywhere and writes config; the config
publisher's role (the API's and the delivery stage's login) only writes config.

Every login but the admin's is pinned to one client id, its username. MQTT lets a new
connection with a client id take over the session of the one holding it, so an unpinned
login could knock any gateway offline by connecting with its id (and take its queued
messages). Pinned, a gateway login can use only its own `gw.` id, an orchestrator login
only its own, and no login may be named in the gateways' `gw.` namespace but a gateway.

Roles and clients are changed on the running broker through its control topic
(`$CONTROL/dynamic-security/v1`), so enrolling or revoking a gateway needs no restart.
The initial configuration file (with the admin client) comes from
`mosquitto_ctrl dynsec init`, the tool Mosquitto ships for exactly that.
"""

from __future__ import annotations

import json
import secrets
import shutil
import ssl
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from provisioning.certificates import issue_certificate, make_certificate_authority
from provisioning.local_broker import broker_limits
from shared.topics import TOPIC_ROOT, TopicChannel, gateway_topic

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
#: Where distributions put the plugin; the first that exists is used.
PLUGIN_PATHS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/arm-linux-gnueabihf/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)
ORCHESTRATOR_ROLE = "orchestrator"
#: The role of the logins that only publish gateway configs.
CONFIG_PUBLISHER_ROLE = "orchestrator-config"
#: `vitrina-provision add-orchestrator` names the config publisher's login after the
#: ingest login, with this suffix.
CONFIG_PUBLISHER_SUFFIX = "-config"
#: Gateways' usernames, and so their client ids, start with this; no other login's may.
GATEWAY_PREFIX = "gw."
#: 32 bytes of randomness: far beyond guessing, and still fits any config format.
PASSWORD_BYTES = 32
#: A control command is answered in milliseconds; this only bounds a broken broker.
COMMAND_TIMEOUT_S = 10.0


class DynsecError(RuntimeError):
    """The broker refused a dynamic-security command (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class MqttCredentials:
    username: str
    password: str = field(repr=False)
    client_id: str | None = None


def plugin_path() -> str:
    for candidate in PLUGIN_PATHS:
        if Path(candidate).is_file():
            return candidate
    raise FileNotFoundError(
        "Mosquitto's dynamic-security plugin was not found (Debian: apt-get install mosquitto)"
    )


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def init_config(path: Path, *, admin: MqttCredentials) -> None:
    """Write a new plugin configuration holding only the admin client."""
    tool = shutil.which("mosquitto_ctrl")
    if tool is None:
        raise FileNotFoundError(
            "mosquitto_ctrl is not installed (Debian: apt-get install mosquitto)"
        )
    path.unlink(missing_ok=True)
    subprocess.run(
        [tool, "dynsec", "init", str(path), admin.username, admin.password],
        check=True,
        capture_output=True,
        timeout=30,
    )
    path.chmod(0o600)


def gateway_username(tenant: str, store: str, gateway: str) -> str:
    return f"{GATEWAY_PREFIX}{tenant}.{store}.{gateway}"


def gateway_acls(tenant: str, store: str, gateway: str) -> list[dict[str, Any]]:
    """Its own presence, status (including the last will) and occupancy out; its own config
    in. Occupancy is counts only, and no gateway reads anyone's (nor its own)."""
    presence, status, occupancy, config = (
        gateway_topic(tenant, store, gateway, channel)
        for channel in (TopicChannel.PRESENCE, TopicChannel.STATUS, TopicChannel.OCCUPANCY,
                        TopicChannel.CONFIG)
    )
    return [
        {"acltype": "publishClientSend", "topic": presence, "allow": True},
        {"acltype": "publishClientSend", "topic": status, "allow": True},
        {"acltype": "publishClientSend", "topic": occupancy, "allow": True},
        {"acltype": "subscribeLiteral", "topic": config, "allow": True},
        {"acltype": "publishClientReceive", "topic": config, "allow": True},
    ]


def orchestrator_acls() -> list[dict[str, Any]]:
    """Presence, status and occupancy of every gateway in (shared or not), config out."""
    presence = f"{TOPIC_ROOT}/+/+/+/{TopicChannel.PRESENCE.value}"
    status = f"{TOPIC_ROOT}/+/+/+/{TopicChannel.STATUS.value}"
    occupancy = f"{TOPIC_ROOT}/+/+/+/{TopicChannel.OCCUPANCY.value}"
    return [
        {"acltype": "subscribePattern", "topic": presence, "allow": True},
        {"acltype": "subscribePattern", "topic": f"$share/+/{presence}", "allow": True},
        {"acltype": "subscribePattern", "topic": status, "allow": True},
        {"acltype": "subscribePattern", "topic": occupancy, "allow": True},
        {"acltype": "subscribePattern", "topic": f"$share/+/{occupancy}", "allow": True},
        {"acltype": "publishClientReceive", "topic": presence, "allow": True},
        {"acltype": "publishClientReceive", "topic": status, "allow": True},
        {"acltype": "publishClientReceive", "topic": occupancy, "allow": True},
        {"acltype": "publishClientSend", "topic": f"{TOPIC_ROOT}/+/+/+/config", "allow": True},
    ]


def config_publisher_acls() -> list[dict[str, Any]]:
    """Config out to every gateway; nothing in."""
    return [{"acltype": "publishClientSend", "topic": f"{TOPIC_ROOT}/+/+/+/config",
             "allow": True}]


#: Anything a role does not grant is refused, in both directions.
DEFAULT_ACCESS = [
    {"acltype": "publishClientSend", "allow": False},
    {"acltype": "publishClientReceive", "allow": False},
    {"acltype": "subscribe", "allow": False},
    {"acltype": "unsubscribe", "allow": True},
]


class DynsecAdmin:
    """A control-topic session with the broker, as its admin client.

    Commands are sent in one message and answered in one response, matched by the
    plugin's `correlationData`, so concurrent admins do not read each other's answers.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        admin: MqttCredentials,
        ca_file: Path | None = None,
    ) -> None:
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"dynsec-admin-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(admin.username, admin.password)
        if ca_file is not None:
            self._client.tls_set(ca_certs=str(ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._host, self._port = host, port
        self._responses: dict[str, list[dict[str, Any]]] = {}
        self._answered = threading.Condition()
        self._client.on_message = self._on_response

    def __enter__(self) -> Self:
        self._client.connect(self._host, self._port)
        self._client.loop_start()
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.subscribe(RESPONSE_TOPIC, qos=1)
        if not subscribed.wait(COMMAND_TIMEOUT_S):
            raise DynsecError("the broker did not confirm the control response subscription")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_response(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
            correlation = str(responses[0]["correlationData"]).split(":", 1)[0]
        except (ValueError, KeyError, IndexError, TypeError):
            return  # an answer to another admin's command without correlation data
        with self._answered:
            self._responses[correlation] = responses
            self._answered.notify_all()

    def execute(self, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """Run commands in order; DynsecError names the first that failed."""
        correlation = uuid.uuid4().hex
        tagged = [
            {**command, "correlationData": f"{correlation}:{index}"}
            for index, command in enumerate(commands)
        ]
        info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
        info.wait_for_publish(COMMAND_TIMEOUT_S)
        with self._answered:
            if not self._answered.wait_for(
                lambda: correlation in self._responses, COMMAND_TIMEOUT_S
            ):
                raise DynsecError("the broker did not answer a dynamic-security command")
            responses = self._responses.pop(correlation)
        for response in responses:
            if "error" in response:
                raise DynsecError(f"{response.get('command')}: {response['error']}")
        return responses

    def lock_down(self) -> None:
        """Refuse by default whatever a role does not grant."""
        self.execute({"command": "setDefaultACLAccess", "acls": DEFAULT_ACCESS})

    def enrol_gateway(self, *, tenant: str, store: str, gateway: str) -> MqttCredentials:
        """Create the gateway's role and client; its client id is pinned to its username
        so nobody can take over its session with the same credentials elsewhere."""
        username = gateway_username(tenant, store, gateway)
        credentials = MqttCredentials(username, new_password(), client_id=username)
        self.execute(
            {
                "command": "createRole",
                "rolename": username,
                "acls": gateway_acls(tenant, store, gateway),
            },
            {
                "command": "createClient",
                "username": username,
                "password": credentials.password,
                "clientid": username,
                "roles": [{"rolename": username}],
            },
        )
        return credentials

    def grant_missing_acls(self, *, tenant: str, store: str, gateway: str) -> list[str]:
        """Add to an existing gateway's role the ACLs `gateway_acls` has and it lacks (a
        gateway enrolled before occupancy reports may not publish them); returns the
        topics granted."""
        return self._grant_missing(gateway_username(tenant, store, gateway),
                                   gateway_acls(tenant, store, gateway))

    def grant_missing_orchestrator_acls(self) -> list[str]:
        """The same for the orchestrator's role (the occupancy subscription)."""
        return self._grant_missing(ORCHESTRATOR_ROLE, orchestrator_acls())

    def _grant_missing(self, rolename: str, wanted: list[dict[str, Any]]) -> list[str]:
        role = self.execute({"command": "getRole", "rolename": rolename})[0]["data"]["role"]
        held = {(acl["acltype"], acl["topic"]) for acl in role.get("acls", [])}
        missing = [acl for acl in wanted if (acl["acltype"], acl["topic"]) not in held]
        if missing:
            self.execute(*({"command": "addRoleACL", "rolename": rolename, **acl}
                           for acl in missing))
        return [f"{acl['acltype']} {acl['topic']}" for acl in missing]

    def revoke_gateway(self, *, tenant: str, store: str, gateway: str) -> None:
        username = gateway_username(tenant, store, gateway)
        self.execute(
            {"command": "deleteClient", "username": username},
            {"command": "deleteRole", "rolename": username},
        )

    def add_orchestrator(self, *, username: str, client_id: str | None = None
                         ) -> MqttCredentials:
        """An ingest worker's login: presence and status in, config out. It is pinned to
        one client id (`client_id`, by default the username), so a second worker needs a
        login of its own: two workers sharing one id would take each other's session."""
        return self._pinned_login(username, client_id or username, ORCHESTRATOR_ROLE,
                                  orchestrator_acls())

    def add_config_publisher(self, *, username: str, client_id: str | None = None
                             ) -> MqttCredentials:
        """The login that publishes gateway configs (the API's and the delivery stage's):
        config out, nothing in; pinned to `client_id` (by default the username). The
        processes that share it connect one publish at a time and hand the id on."""
        return self._pinned_login(username, client_id or username, CONFIG_PUBLISHER_ROLE,
                                  config_publisher_acls())

    def _pinned_login(self, username: str, client_id: str, role: str,
                      acls: list[dict[str, Any]]) -> MqttCredentials:
        for name in {username, client_id}:
            if name.startswith(GATEWAY_PREFIX):
                raise DynsecError(f"{name!r}: names starting with {GATEWAY_PREFIX!r} are "
                                  "gateways' (their logins and client ids)")
        credentials = MqttCredentials(username, new_password(), client_id=client_id)
        existing = self.execute({"command": "listRoles"})[0]["data"]["roles"]
        commands: list[dict[str, Any]] = []
        if role not in existing:
            commands.append({"command": "createRole", "rolename": role, "acls": acls})
        commands.append(
            {
                "command": "createClient",
                "username": username,
                "password": credentials.password,
                "clientid": client_id,
                "roles": [{"rolename": role}],
            }
        )
        self.execute(*commands)
        return credentials


def render_secure_config(
    *,
    port: int,
    workdir: Path,
    dynsec_file: Path,
    ca_file: Path,
    cert_file: Path,
    key_file: Path,
    bind: str = "127.0.0.1",
    plugin: str | None = None,
) -> str:
    """A TLS-only listener whose logins and ACLs come from the dynamic-security plugin
    (`plugin`, by default the one installed on this machine)."""
    return "\n".join(
        [
            "per_listener_settings false",
            f"listener {port} {bind}",
            f"cafile {ca_file}",
            f"certfile {cert_file}",
            f"keyfile {key_file}",
            "tls_version tlsv1.2",
            "allow_anonymous false",
            f"plugin {plugin or plugin_path()}",
            f"plugin_opt_config_file {dynsec_file}",
            "persistence true",
            f"persistence_location {workdir}/",
            broker_limits(),
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "",
        ]
    )


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """Everything a TLS + dynamic-security Mosquitto needs, in one directory."""

    directory: Path
    port: int
    admin: MqttCredentials

    @property
    def config(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def dynsec(self) -> Path:
        return self.directory / "dynamic-security.json"

    @property
    def ca_certificate(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_certificate(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def admin_file(self) -> Path:
        return self.directory / "admin.json"


def provision_broker(
    directory: Path,
    *,
    port: int,
    hostnames: list[str],
    bind: str = "127.0.0.1",
    plugin: str | None = None,
) -> BrokerFiles:
    """Create a CA, the broker's certificate, the plugin config with an admin, and the
    broker config. The admin password is written (0600) to `admin.json` beside them.
    `plugin` names the dynamic-security plugin where it is not where distributions put
    it (`PLUGIN_PATHS`), e.g. on an admin's machine whose Mosquitto came from elsewhere."""
    directory.mkdir(parents=True, exist_ok=True)
    files = BrokerFiles(directory, port, MqttCredentials("admin", new_password()))
    authority = make_certificate_authority()
    authority.write(files.ca_certificate, files.ca_key)
    issue_certificate(authority, common_name=hostnames[0], hostnames=hostnames).write(
        files.server_certificate, files.server_key
    )
    init_config(files.dynsec, admin=files.admin)
    files.admin_file.touch(mode=0o600)
    files.admin_file.write_text(
        json.dumps({"username": files.admin.username, "password": files.admin.password})
    )
    files.config.write_text(
        render_secure_config(
            port=port,
            workdir=directory,
            dynsec_file=files.dynsec,
            ca_file=files.ca_certificate,
            cert_file=files.server_certificate,
            key_file=files.server_key,
            bind=bind,
            plugin=plugin,
        )
    )
    return files


def load_broker_files(directory: Path, *, port: int) -> BrokerFiles:
    admin = json.loads((directory / "admin.json").read_text())
    return BrokerFiles(directory, port, MqttCredentials(admin["username"], admin["password"]))
