"""The `vitrina-cloud` command as an operator runs it: a real process, real signals; the
worker also as deployed, a process per stage."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect, text
from sqlmodel import select
from typer.testing import CliRunner, Result

from cloud.audit import entries
from cloud.auth.keys import hash_key, key_id_of
from cloud.channels.fcm import FcmSettings
from cloud.cli import app
from cloud.customers import crud
from cloud.customers.models import (
    ConsentCreate,
    CustomerCreate,
    FcmRegistration,
    WifiMacRegistration,
)
from cloud.db import make_engine, session_scope
from cloud.messages.models import Message, MessageStatus
from cloud.presence.crud import list_gateways
from cloud.scenarios.catalog import save_scenario
from cloud.scenarios.spec import ScenarioSpec
from cloud.settings import get_settings
from cloud.templates import TemplateSpec
from cloud.templates.crud import save_template
from cloud.wakeups import APPLICATION_NAME
from demo.welcome import SCENARIO, TEMPLATE_KEY, TEMPLATE_PARTS, configure_welcome
from provisioning.local_broker import LocalBroker, free_port
from sandbox.fcm import FcmSandbox, make_token
from tests.cloud.factories import (
    KEY_ID,
    KEY_SECRET,
    MAC_OF,
    PSEUDONYMIZER,
    START,
    batch_payload,
    make_event,
    presence_topic,
    status_payload,
    status_topic,
    wifi_pseudonym,
)
from tests.cloud.running import WAIT_S, publish_all, publisher, wait_for
from tests.cloud.sse import sse_events

#: A clean stop finishes the batch in hand and disconnects: well under this.
SHUTDOWN_S = 15.0


def environment(
    *, database_url: str, tenant: str, broker: LocalBroker | None = None, api_port: int = 0,
    fcm: FcmSettings | None = None,
) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("VITRINA_")}
    env.update({
        "VITRINA_DATABASE_URL": database_url,
        "VITRINA_TENANTS": json.dumps(
            {tenant: {"keys": [{"key_id": KEY_ID, "secret": KEY_SECRET}]}}
        ),
        "VITRINA_API__PORT": str(api_port),
        # Tests run at any hour: quiet hours would hold the greeting at night.
        "VITRINA_SCENARIOS": json.dumps({"quiet_hours": None}),
    })
    if broker is not None:
        env.update({
            "VITRINA_MQTT__HOST": broker.host, "VITRINA_MQTT__PORT": str(broker.port),
            "VITRINA_MQTT__CLIENT_ID": f"cli-{tenant}",
            "VITRINA_MQTT__SHARE_GROUP": f"g-{tenant}",
            # The session outlives the process (as in production); not for long here.
            "VITRINA_MQTT__SESSION_EXPIRY_S": "5",
        })
    if fcm is not None:
        env.update({
            "VITRINA_CHANNELS__PUSH__PROJECT_ID": fcm.project_id,
            "VITRINA_CHANNELS__PUSH__CREDENTIALS_FILE": fcm.credentials_file,
            "VITRINA_CHANNELS__PUSH__ENDPOINT": str(fcm.endpoint),
        })
    return env


def invoke(
    arguments: list[str], *, database_url: str, tenant: str, monkeypatch: pytest.MonkeyPatch,
    stdin: str | None = None,
) -> Result:
    """Run the command in this process with the environment an operator would set."""
    with monkeypatch.context() as patch:
        for name, value in environment(database_url=database_url, tenant=tenant).items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        handlers, level = logging.root.handlers[:], logging.root.level
        try:
            return CliRunner().invoke(app, arguments, input=stdin)
        finally:
            get_settings.cache_clear()
            # The command configures logging onto the runner's stream, closed after the call.
            logging.root.handlers[:] = handlers
            logging.root.setLevel(level)


def test_migrate_creates_the_schema(
    database_url: str, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = invoke(["migrate"], database_url=database_url, tenant=tenant, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    engine = make_engine(database_url)
    try:
        assert "presence_event" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_keys_create_list_and_revoke(
    migrated_url: str, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(*arguments: str) -> Result:
        return invoke(
            ["keys", *arguments], database_url=migrated_url, tenant=tenant,
            monkeypatch=monkeypatch,
        )

    made = run("create", "--tenant", tenant, "--role", "admin", "--name", "back office")
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()  # the key alone on standard output, for scripts
    key_id = key_id_of(key)
    assert key_id is not None
    assert f"created admin key {key_id} for tenant {tenant}" in made.stderr
    operator = run("create", "--role", "operator", "--name", "on-call")
    assert operator.exit_code == 0, operator.output
    listed = run("list")
    assert listed.exit_code == 0, listed.output
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(key_id)]
    assert line.split()[:3] == [key_id, "admin", tenant]
    assert line.endswith("back office")
    assert "operator  -" in listed.stdout
    assert key not in listed.output
    assert key.split("_", 2)[2][:12] not in listed.output

    revoked = run("revoke", key_id)
    assert revoked.exit_code == 0, revoked.output
    [line] = [line for line in run("list", "--tenant", tenant).stdout.splitlines()
              if line.startswith(key_id)]
    # id, role, tenant, created (date, time), last used, revoked (date, time), name
    fields = line.split()
    assert fields[5] == "-"  # never used
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", fields[6]), line  # revoked now
    assert run("revoke", "0123456789ab").exit_code == 1

    engine = make_engine(migrated_url)
    try:
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT key_id, secret_hash FROM api_key")).all()
    finally:
        engine.dispose()
    assert (key_id, hash_key(key)) in [tuple(row) for row in stored]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--role", "app"], "an app key needs a tenant"),
        (["--role", "operator", "--tenant", "TENANT"], "an operator key belongs to no tenant"),
        (["--role", "admin", "--tenant", "nobody"], "tenant 'nobody' is not configured"),
        (["--role", "root", "--tenant", "TENANT"], "'root' is not one of"),
    ],
)
def test_keys_create_refuses_what_makes_no_sense(
    arguments: list[str], message: str, tmp_path: Path, tenant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"sqlite:///{tmp_path / 'vitrina.db'}"
    arguments = [tenant if argument == "TENANT" else argument for argument in arguments]
    result = invoke(["keys", "create", *arguments], database_url=url, tenant=tenant,
                    monkeypatch=monkeypatch)
    assert result.exit_code == 2
    assert message in result.output
    assert result.stdout == ""


def test_customer_token_keys_are_added_listed_and_retired_with_an_audit_trail(
    migrated_url: str, tenant: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def run(*arguments: str) -> Result:
        return invoke(["customer-tokens", *arguments], database_url=migrated_url,
                      tenant=tenant, monkeypatch=monkeypatch)

    private_key = tmp_path / "backend.pem"
    made = run("keygen", "--private-key", str(private_key), "--algorithm", "EdDSA")
    assert made.exit_code == 0, made.output
    public_key = tmp_path / "backend.pub"
    public_key.write_text(made.stdout)
    assert "PRIVATE KEY" not in made.stdout
    assert run("keygen", "--private-key", str(private_key)).exit_code == 1  # not overwritten
    added = run("add", "--tenant", tenant, "--kid", "k-1", "--public-key", str(public_key),
                "--algorithm", "EdDSA")
    assert added.exit_code == 0, added.output
    assert run("add", "--tenant", tenant, "--kid", "k-1", "--public-key", str(public_key),
               "--algorithm", "EdDSA").exit_code == 2  # a kid is never reused
    refused = run("add", "--tenant", tenant, "--kid", "k-2", "--public-key", str(private_key),
                  "--algorithm", "EdDSA")
    assert refused.exit_code == 2
    assert "private key" in refused.output
    assert run("retire", "--tenant", tenant, "k-1").exit_code == 0
    assert run("retire", "--tenant", tenant, "nothing").exit_code == 1
    listed = run("list", "--tenant", tenant).stdout.splitlines()
    assert [line.split()[:2] for line in listed[1:]] == [["k-1", "EdDSA"]]
    assert listed[1].split()[-1] != "-"  # retired
    engine = make_engine(migrated_url)
    try:
        with session_scope(engine) as session:
            actions = [entry.action for entry in entries(session, tenant=tenant, limit=10)]
    finally:
        engine.dispose()
    assert actions == ["token_key.retire", "token_key.create"]


def test_keys_on_an_unmigrated_database_say_what_to_do(
    tmp_path: Path, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'vitrina.db'}"
    result = invoke(["keys", "list"], database_url=url, tenant=tenant, monkeypatch=monkeypatch)
    assert result.exit_code == 1
    assert "run `vitrina-cloud migrate`" in result.output


def test_keys_bootstrap_prints_an_operator_key_and_the_hash_to_configure(
    tmp_path: Path, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'vitrina.db'}"
    result = invoke(["keys", "bootstrap"], database_url=url, tenant=tenant,
                    monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    name, _, digest = result.stdout.strip().partition("=")
    assert name == "VITRINA_OPERATOR_KEY_HASH"
    key = result.stderr.strip().rsplit(" ", 1)[1]
    assert key_id_of(key) is not None
    assert hash_key(key) == digest
    assert not (tmp_path / "vitrina.db").exists()  # nothing stored


def create_key_with_the_command(env: dict[str, str], *arguments: str) -> str:
    return cloud_command(env, "keys", "create", *arguments)


def cloud_command(env: dict[str, str], *arguments: str) -> str:
    """`vitrina-cloud <arguments>` in a process of its own; its standard output."""
    result = subprocess.run(
        [sys.executable, "-c", "from cloud.cli import main; main()", *arguments],
        env=env, capture_output=True, text=True, timeout=WAIT_S * 3, check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


#: The whole service starting (imports, migrations, workers, broker): about ten seconds
#: on a quiet machine, more when the test processes share two cores with others.
SERVE_START_S = 60.0


@pytest.fixture
def served(
    migrated_url: str, tenant: str, broker: LocalBroker, fcm_settings: FcmSettings, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", "from cloud.cli import main; main()", "serve"],
        env=environment(database_url=migrated_url, tenant=tenant, broker=broker, api_port=port,
                        fcm=fcm_settings),
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            return False

    try:
        wait_for(ready, what="serve ready", timeout=SERVE_START_S)
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


#: The whole service on PostgreSQL, as production runs it; the demo runs it on SQLite.
@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
def test_serve_runs_the_journey_and_stops_cleanly_on_sigterm(
    served: tuple[subprocess.Popen[bytes], str], tenant: str, broker: LocalBroker,
    fcm_server: FcmSandbox, migrated_url: str, tmp_path: Path,
) -> None:
    process, base = served
    env = environment(database_url=migrated_url, tenant=tenant)
    admin_key = create_key_with_the_command(env, "--tenant", tenant, "--role", "admin")
    app_key = create_key_with_the_command(env, "--tenant", tenant, "--role", "app")
    configure_welcome(base, tenant, admin_key)
    shop_app = httpx.Client(headers={"Authorization": f"Bearer {app_key}"})
    back_office = httpx.Client(headers={"Authorization": f"Bearer {admin_key}"})
    api = f"{base}/tenants/{tenant}"
    assert httpx.post(f"{api}/customers", json={"first_name": "Juan"}).status_code == 401
    # The shop's backend makes its signing key and registers the public half; the app's
    # user signs in with a token it signs (`vitrina-cloud customer-tokens`).
    private_key = tmp_path / "customer-tokens.pem"
    public_key = tmp_path / "customer-tokens.pub"
    public_key.write_text(cloud_command(env, "customer-tokens", "keygen",
                                        "--private-key", str(private_key)) + "\n")
    assert private_key.stat().st_mode & 0o777 == 0o600
    cloud_command(env, "customer-tokens", "add", "--tenant", tenant, "--kid", "backend-1",
                  "--public-key", str(public_key))
    assert "backend-1" in cloud_command(env, "customer-tokens", "list", "--tenant", tenant)
    signed = cloud_command(env, "customer-tokens", "sign", "--tenant", tenant,
                           "--kid", "backend-1", "--private-key", str(private_key),
                           "--subject", "shop-user-juan")
    shop_app.headers["X-Customer-Token"] = signed
    customer = shop_app.post(f"{api}/customers", json={"first_name": "Juan"}).json()
    assert customer["external_id"] == "shop-user-juan"
    url = f"{api}/customers/{customer['id']}"
    for channel in ("push", "location_marketing"):
        shop_app.post(f"{url}/consent", json={"channel": channel, "granted": True, "source": "app"})
    token = make_token("juan")
    assert shop_app.post(f"{url}/devices", json={"kind": "fcm", "token": token}).status_code == 201
    wifi = {"kind": "wifi_mac", "mac": MAC_OF["juan"]}
    assert shop_app.post(f"{url}/devices", json=wifi).status_code == 201
    assert shop_app.get(f"{url}/messages").status_code == 403
    # The live stream sees the worker store the event, and stays open until SIGTERM.
    live = back_office.stream("GET", f"{api}/presence/live",
                              timeout=httpx.Timeout(WAIT_S, read=WAIT_S))
    stream = sse_events(live.__enter__().iter_lines())
    assert next(stream).name == "snapshot"
    enter = make_event(tenant=tenant, pseudonym=wifi_pseudonym(MAC_OF["juan"]))
    with publisher(broker) as client:
        publish_all(client, [(presence_topic(tenant), batch_payload([enter]))])
    assert next(event for event in stream if event.name == "presence").data["transition"] == (
        "enter")
    [push] = fcm_server.wait_for(1, timeout_s=WAIT_S)
    assert push.token == token
    messages = wait_for(
        lambda: [m for m in back_office.get(f"{url}/messages").json() if m["status"] == "sent"],
        what="message recorded as sent",
    )
    assert messages[0]["provider_message_id"] == push.name
    metrics = httpx.get(f"{base}/metrics").text
    assert 'vitrina_ingest_events_total{outcome="new"} 1.0' in metrics
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=SHUTDOWN_S) == 0
    assert [event.name for event in stream][-1] == "end"  # ended by the server, not cut
    live.__exit__(None, None, None)
    shop_app.close()
    back_office.close()
    assert_no_raw_identifier(migrated_url, tmp_path / "serve.log", MAC_OF["juan"])
    log = (tmp_path / "serve.log").read_text(errors="replace")
    for key in (admin_key, app_key):
        assert key.split("_", 2)[2] not in log
    assert signed.rsplit(".", 1)[1] not in log  # a customer token is a credential too
    records = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert any(record["logger"] == "cloud.ingest.consumer" for record in records)
    assert all({"ts", "level", "logger", "msg"} <= record.keys() for record in records)
    # Said once at start-up: what the settings leave off (FCM is configured here).
    notes = [record["msg"] for record in records if record["logger"] == "cloud.service"]
    assert [note.split(" is ")[0] for note in notes if note.startswith("channel ")] == [
        "channel web_push", "channel email", "channel sms"]
    assert any(note.startswith("tracking.public_base_url is http://127.0.0.1:8000 (the "
                               "default)") for note in notes)
    assert sum(note.startswith("quiet hours are off") for note in notes) == 1


def assert_no_raw_identifier(url: str, log: Path, mac: str) -> None:
    """The MAC the customer handed over exists nowhere: not in any table, not in the log."""
    forms = {mac.lower(), mac.upper(), mac.replace(":", "").lower(), mac.replace(":", "-")}
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
            dump = "\n".join(
                repr(row) for table in tables
                for row in connection.execute(text(f'SELECT * FROM "{table}"'))
            )
    finally:
        engine.dispose()
    assert wifi_pseudonym(mac) in dump  # the scan does see the data
    text_log = log.read_text(errors="replace")
    for form in forms:
        assert form not in dump
        assert form not in text_log


def test_worker_stages_apart_need_postgresql(
    tmp_path: Path, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stages in separate processes are woken through PostgreSQL: on SQLite a worker of
    only some stages would leave the work it hands over to the others' polling."""
    url = f"sqlite:///{tmp_path / 'vitrina.db'}"
    result = invoke(["worker", "--stage", "ingest"], database_url=url, tenant=tenant,
                    monkeypatch=monkeypatch)
    assert result.exit_code == 2
    assert "running only some stages here (ingest) needs PostgreSQL" in result.stderr
    assert "on sqlite run all three in one worker (no --stage)" in result.stderr


def seed_welcomed_customer(url: str, tenant: str, token: str) -> str:
    """A customer with push and location-marketing consent, an FCM token and the MAC of
    their phone, and the shop's greeting; returns the pseudonym a gateway reports."""
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            customer = crud.create_customer(session, tenant=tenant, data=CustomerCreate(),
                                            now=START)
            for channel in ("push", "location_marketing"):
                crud.record_consent(session, customer=customer, now=START, data=ConsentCreate(
                    channel=channel, granted=True, source="app"))
            for registration in (FcmRegistration(kind="fcm", token=token),
                                 WifiMacRegistration(kind="wifi_mac", mac=MAC_OF["juan"])):
                crud.register_device(session, customer=customer, registration=registration,
                                     pseudonymizers=[PSEUDONYMIZER], now=START)
            save_template(session, tenant=tenant, key=TEMPLATE_KEY, now=START,
                          spec=TemplateSpec.model_validate(
                              {"channel": "push", "locale": "en-GB", "parts": TEMPLATE_PARTS}))
            save_scenario(session, tenant=tenant, spec=ScenarioSpec.model_validate(SCENARIO),
                          now=START)
            session.commit()
    finally:
        engine.dispose()
    return wifi_pseudonym(MAC_OF["juan"])


def listeners(url: str) -> int:
    """Connections of `cloud.wakeups` listeners to the database at `url`."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(
                text("SELECT count(*) FROM pg_stat_activity "
                     "WHERE application_name = :name AND datname = current_database()"),
                {"name": APPLICATION_NAME},
            ).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
def test_stage_workers_hand_presence_to_a_push_through_the_database(
    migrated_url: str, tenant: str, broker: LocalBroker, fcm_settings: FcmSettings,
    fcm_server: FcmSandbox, tmp_path: Path,
) -> None:
    """Deployed as the units and compose services run it: one `worker --stage` process
    per stage. The stages poll only once a minute here, so the push can only arrive as
    fast as it does because each process wakes the next through PostgreSQL. SIGTERM then
    stops each after its batch, with status 0."""
    token = make_token("juan")
    pseudonym = seed_welcomed_customer(migrated_url, tenant, token)
    env = environment(database_url=migrated_url, tenant=tenant, broker=broker,
                      fcm=fcm_settings)
    env["VITRINA_SCENARIOS"] = json.dumps({"quiet_hours": None, "poll_interval_s": 60})
    env["VITRINA_DELIVERY__POLL_INTERVAL_S"] = "60"
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for stage in ("ingest", "scenarios", "delivery"):
            with (tmp_path / f"{stage}.log").open("wb") as sink:
                processes[stage] = subprocess.Popen(
                    [sys.executable, "-c", "from cloud.cli import main; main()", "worker",
                     "--stage", stage],
                    env=env, stdout=sink, stderr=subprocess.STDOUT,
                )

        def alive() -> None:
            for stage, process in processes.items():
                assert process.poll() is None, (tmp_path / f"{stage}.log").read_text()

        def listening() -> bool:
            alive()
            return listeners(migrated_url) == 2  # scenarios and delivery; not ingest

        wait_for(listening, what="the scenario and delivery stages listening", timeout=60)
        engine = make_engine(migrated_url)
        try:
            with publisher(broker) as client:

                def subscribed() -> bool:  # ingest stores a status once it is subscribed
                    alive()
                    publish_all(client, [(status_topic(tenant), status_payload(tenant=tenant))])
                    with session_scope(engine) as session:
                        return bool(list_gateways(session, tenant=tenant))

                wait_for(subscribed, what="the ingest stage subscribed", timeout=60)
                enter = make_event(tenant=tenant, pseudonym=pseudonym)
                publish_all(client, [(presence_topic(tenant), batch_payload([enter]))])
                [push] = fcm_server.wait_for(1, timeout_s=WAIT_S)
            assert push.token == token
            for process in processes.values():
                process.send_signal(signal.SIGTERM)
            statuses = {stage: process.wait(timeout=SHUTDOWN_S)
                        for stage, process in processes.items()}
            with session_scope(engine) as session:
                [message] = session.exec(select(Message)).all()
        finally:
            engine.dispose()
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    assert statuses == {"ingest": 0, "scenarios": 0, "delivery": 0}
    assert message.status == MessageStatus.SENT
    assert message.provider_message_id == push.name
    for stage in processes:
        log = (tmp_path / f"{stage}.log").read_text(errors="replace")
        records = [json.loads(line) for line in log.splitlines() if line.strip()]
        assert all(record["level"] not in {"ERROR", "CRITICAL"} for record in records), log
