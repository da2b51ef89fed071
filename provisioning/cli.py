"""`vitrina-provision`: set up a broker, enrol and revoke gateways, add orchestrator logins."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from provisioning.broker_security import (
    CONFIG_PUBLISHER_SUFFIX,
    DynsecAdmin,
    DynsecError,
    load_broker_files,
    provision_broker,
)
from provisioning.bundle import GatewayIdentity, write_bundle
from shared.errors import ContractError
from shared.pseudonym import TenantKey


def _admin(arguments: argparse.Namespace) -> DynsecAdmin:
    files = load_broker_files(arguments.broker_dir, port=arguments.broker_port)
    return DynsecAdmin(
        host=arguments.broker_host,
        port=files.port,
        admin=files.admin,
        ca_file=files.ca_certificate,
    )


def broker_init(arguments: argparse.Namespace) -> int:
    files = provision_broker(
        arguments.directory,
        port=arguments.port,
        hostnames=arguments.hostname,
        bind=arguments.bind,
        plugin=arguments.plugin,
    )
    print(
        f"broker files written to {files.directory}: start it with "
        f"`mosquitto -c {files.config}`, then run `vitrina-provision lock-down`"
    )
    return 0


def lock_down(arguments: argparse.Namespace) -> int:
    with _admin(arguments) as control:
        control.lock_down()
    print("default access is now: refuse whatever a role does not grant")
    return 0


def enrol_gateway(arguments: argparse.Namespace) -> int:
    identity = GatewayIdentity(arguments.tenant, arguments.store, arguments.gateway)
    key = TenantKey.from_text(arguments.key_id, arguments.key_file.read_text())
    files = load_broker_files(arguments.broker_dir, port=arguments.broker_port)
    with _admin(arguments) as control:
        credentials = control.enrol_gateway(
            tenant=identity.tenant, store=identity.store, gateway=identity.gateway
        )
    config = write_bundle(
        arguments.out,
        identity=identity,
        credentials=credentials,
        broker_host=arguments.public_host or arguments.broker_host,
        broker_port=arguments.broker_port,
        tenant_key=key,
        ca_certificate=files.ca_certificate,
        timezone=arguments.timezone,
        installed_directory=arguments.installed_dir,
    )
    print(
        f"gateway {credentials.username} enrolled; bundle in {config.parent} "
        f"(copy it to {arguments.installed_dir} on the gateway)"
    )
    return 0


def revoke_gateway(arguments: argparse.Namespace) -> int:
    with _admin(arguments) as control:
        control.revoke_gateway(
            tenant=arguments.tenant, store=arguments.store, gateway=arguments.gateway
        )
    print("gateway revoked: it can no longer log in")
    return 0


def grant_missing(arguments: argparse.Namespace) -> int:
    if not arguments.orchestrator and not (arguments.tenant and arguments.store
                                           and arguments.gateway):
        print("vitrina-provision: name --tenant, --store and --gateway, or --orchestrator",
              file=sys.stderr)
        return 2
    with _admin(arguments) as control:
        if arguments.orchestrator:
            granted = control.grant_missing_orchestrator_acls()
        else:
            granted = control.grant_missing_acls(
                tenant=arguments.tenant, store=arguments.store, gateway=arguments.gateway)
    for acl in granted:
        print(f"granted: {acl}")
    print("nothing was missing" if not granted else f"{len(granted)} ACL(s) added")
    return 0


def add_orchestrator(arguments: argparse.Namespace) -> int:
    with _admin(arguments) as control:
        credentials = control.add_orchestrator(username=arguments.username,
                                               client_id=arguments.client_id)
        publisher = None if arguments.no_config_publisher else control.add_config_publisher(
            username=f"{arguments.username}{CONFIG_PUBLISHER_SUFFIX}")
    lines = [
        f"VITRINA_MQTT__USERNAME={credentials.username}",
        f"VITRINA_MQTT__PASSWORD={credentials.password}",
        f"VITRINA_MQTT__CLIENT_ID={credentials.client_id}",
        "VITRINA_MQTT__TLS=true",
    ]
    if publisher is not None:
        lines += [
            f"VITRINA_MQTT__CONFIG_PUBLISHER__USERNAME={publisher.username}",
            f"VITRINA_MQTT__CONFIG_PUBLISHER__PASSWORD={publisher.password}",
            f"VITRINA_MQTT__CONFIG_PUBLISHER__CLIENT_ID={publisher.client_id}",
        ]
    arguments.out.touch(mode=0o600)
    arguments.out.write_text("".join(f"{line}\n" for line in lines))
    made = " and ".join(login.username for login in (credentials, publisher) if login)
    print(f"orchestrator logins {made} (each pinned to its client id) written to "
          f"{arguments.out}")
    return 0


def _broker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker-dir",
        type=Path,
        required=True,
        help="directory made by broker-init (holds the admin login and CA)",
    )
    parser.add_argument("--broker-host", default="localhost", help="where to reach the broker")
    parser.add_argument("--broker-port", type=int, default=8883)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitrina-provision", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("broker-init", help="CA, TLS certificate, dynamic security, config")
    init.add_argument("directory", type=Path)
    init.add_argument("--port", type=int, default=8883)
    init.add_argument(
        "--hostname",
        action="append",
        required=True,
        help="a name or address gateways dial (repeat for several)",
    )
    init.add_argument("--bind", default="0.0.0.0")
    init.add_argument(
        "--plugin",
        help="Mosquitto's dynamic-security plugin, for the mosquitto.conf written beside the "
        "files (default: where Debian, Raspberry Pi OS or a source build put it)")
    init.set_defaults(handler=broker_init)

    lock = commands.add_parser("lock-down", help="refuse by default what no role grants")
    _broker_options(lock)
    lock.set_defaults(handler=lock_down)

    enrol = commands.add_parser("enrol-gateway", help="create a gateway login and its bundle")
    _broker_options(enrol)
    for name in ("tenant", "store", "gateway"):
        enrol.add_argument(f"--{name}", required=True)
    enrol.add_argument("--key-id", required=True, help="the tenant key's id")
    enrol.add_argument("--key-file", type=Path, required=True, help="the tenant key (hex/base64)")
    enrol.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    enrol.add_argument("--public-host", help="broker address as the gateway dials it")
    enrol.add_argument("--timezone", default="UTC", help="the store's time zone")
    enrol.add_argument("--installed-dir", type=Path, default=Path("/etc/vitrina"))
    enrol.set_defaults(handler=enrol_gateway)

    revoke = commands.add_parser("revoke-gateway", help="delete a gateway's login")
    _broker_options(revoke)
    for name in ("tenant", "store", "gateway"):
        revoke.add_argument(f"--{name}", required=True)
    revoke.set_defaults(handler=revoke_gateway)

    grant = commands.add_parser(
        "grant-missing-acls",
        help="give a gateway (or the orchestrator) enrolled by an older release what this "
             "release's role has, e.g. publishing occupancy reports")
    _broker_options(grant)
    for name in ("tenant", "store", "gateway"):
        grant.add_argument(f"--{name}")
    grant.add_argument("--orchestrator", action="store_true", help="the orchestrator's role")
    grant.set_defaults(handler=grant_missing)

    orchestrator = commands.add_parser(
        "add-orchestrator",
        help="an ingest worker's login and, beside it, the config publisher's "
        "(<username>-config), each pinned to its client id")
    _broker_options(orchestrator)
    orchestrator.add_argument("--username", required=True)
    orchestrator.add_argument(
        "--client-id", help="the one client id the ingest worker may use (default: the "
        "username); each ingest worker needs a login of its own")
    orchestrator.add_argument(
        "--no-config-publisher", action="store_true",
        help="the ingest login only (for a further ingest worker)")
    orchestrator.add_argument("--out", type=Path, required=True, help="env file to write")
    orchestrator.set_defaults(handler=add_orchestrator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        code: int = arguments.handler(arguments)
    except (DynsecError, ContractError, OSError, json.JSONDecodeError, KeyError) as error:
        print(f"vitrina-provision: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
