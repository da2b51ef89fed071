"""The broker: reachable, speaking TLS with a certificate the bundle's CA vouches for, and
taking the gateway's login.

The login is a real MQTT CONNECT with the bundle's username, password and client id,
and a clean DISCONNECT (no will, no session left behind). The broker pins a gateway's
login to its client id, so a second connection takes over the running agent's session
(the agent is cut off and its last will says "offline"): when the agent's own heartbeat
shows it connected right now, that heartbeat is the proof and the doctor does not log in
again.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.doctor.core import CheckResult, DoctorContext, fail, ok, warn
from edge.doctor.files import ENROL_AGAIN

#: A certificate that ends sooner than this is worth a warning.
CERTIFICATE_WARNING_DAYS = 30


def _address(context: DoctorContext) -> str:
    mqtt_settings = context.loaded.mqtt
    return f"{mqtt_settings.host}:{mqtt_settings.port}"


def _tls_context(context: DoctorContext) -> ssl.SSLContext:
    mqtt_settings = context.loaded.mqtt
    tls = ssl.create_default_context(
        cafile=None if mqtt_settings.ca_file is None else str(mqtt_settings.ca_file))
    if mqtt_settings.cert_file is not None and mqtt_settings.key_file is not None:
        tls.load_cert_chain(str(mqtt_settings.cert_file), str(mqtt_settings.key_file))
    return tls


def check_broker(context: DoctorContext) -> CheckResult:
    """TCP to the broker, then (with TLS configured) a TLS handshake verified by the CA."""
    mqtt_settings = context.loaded.mqtt
    host, port = mqtt_settings.host, mqtt_settings.port
    address = _address(context)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        return fail("broker", f"cannot resolve {host}: {error.strerror}",
                    "check [mqtt].host in the config and the device's DNS "
                    f"(resolvectl query {host})")
    try:
        raw = socket.create_connection((host, port), timeout=context.timeout_s)
    except ConnectionRefusedError:
        return fail("broker", f"nothing accepts connections at {address} (refused)",
                    "check that the broker runs and that [mqtt].port is its TLS listener's")
    except TimeoutError:
        return fail("broker", f"no answer from {address} within {context.timeout_s:g} s",
                    f"a firewall may drop the traffic: allow outgoing TCP to port {port}")
    except OSError as error:
        return fail("broker", f"cannot connect to {address}: {error.strerror or error}",
                    "check the network (ip route; ping the broker's host)")
    with raw:
        if not mqtt_settings.uses_tls:
            return warn("broker", f"{address} answers, without TLS: the password and the "
                        "presence cross the network in the clear",
                        "use the broker's TLS listener: tls = true and ca_file in [mqtt]")
        try:
            tls = _tls_context(context)
        except (OSError, ssl.SSLError, ValueError) as error:
            return fail("broker", f"cannot load the TLS files of [mqtt]: {error}",
                        f"see the bundle line; or {ENROL_AGAIN}")
        raw.settimeout(context.timeout_s)
        try:
            with tls.wrap_socket(raw, server_hostname=host) as secured:
                version = secured.version()
                certificate = secured.getpeercert() or {}
        except ssl.SSLCertVerificationError as error:
            reason = error.verify_message or str(error)
            if "expired" in reason or "not yet valid" in reason:
                fix = ("check the clock (see the clock line); if it is right, the broker's "
                       "certificate must be renewed")
            else:
                fix = (f"the CA file does not vouch for {host}: use the address the "
                       f"certificate names, or {ENROL_AGAIN}")
            return fail("broker", f"{address} answers, but its certificate is not trusted: "
                        f"{reason}", fix)
        except (ssl.SSLError, TimeoutError, ConnectionError) as error:
            return fail("broker", f"TLS handshake with {address} failed: "
                        f"{getattr(error, 'reason', None) or error or type(error).__name__}",
                        f"check that port {port} is the broker's TLS listener")
    not_after = certificate.get("notAfter")
    ends = "" if not isinstance(not_after, str) else not_after
    message = f"{address} answers with {version}, certificate trusted"
    if ends:
        expiry = datetime.fromtimestamp(ssl.cert_time_to_seconds(ends), UTC)
        days = (expiry - datetime.now(UTC)).days
        message += f" until {expiry:%Y-%m-%d}"
        if days < CERTIFICATE_WARNING_DAYS:
            return warn("broker", f"{message}: it ends in {days} days",
                        "renew the broker's certificate before then")
    return ok("broker", message)


class _Connack:
    def __init__(self) -> None:
        self.reason: ReasonCode | None = None
        self.done = threading.Event()

    def on_connect(self, _client: mqtt.Client, _userdata: object, _flags: object,
                   reason: ReasonCode, _properties: object) -> None:
        self.reason = reason
        self.done.set()


def check_login(context: DoctorContext) -> CheckResult:
    """The broker accepts the bundle's login (or the agent is connected with it now)."""
    settings = context.loaded
    mqtt_settings = settings.mqtt
    user = mqtt_settings.username or "(anonymous)"
    if context.agent is not None and context.agent_connected():
        age = (datetime.now(UTC) - context.agent.sent_at).total_seconds()
        return ok("login", f"the running agent is connected as {user} (its heartbeat of "
                  f"{age:.0f} s ago); not logging in a second time, which would take over "
                  "its session")
    if context.outbox_error is not None:
        return warn("login", f"not tried: {context.outbox_error}, so whether the agent is "
                    "connected now cannot be told, and a second login would cut it off",
                    "run the doctor as root or as the service user")
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=settings.client_id,
        protocol=mqtt.MQTTv5 if mqtt_settings.protocol == "5" else mqtt.MQTTv311)
    if mqtt_settings.username is not None:
        password = mqtt_settings.password
        client.username_pw_set(mqtt_settings.username,
                               None if password is None else password.get_secret_value())
    if mqtt_settings.uses_tls:
        client.tls_set_context(_tls_context(context))
    client.connect_timeout = context.timeout_s
    connack = _Connack()
    client.on_connect = connack.on_connect
    started = time.monotonic()
    try:
        client.connect(mqtt_settings.host, mqtt_settings.port, keepalive=10)
    except (OSError, ssl.SSLError) as error:
        return fail("login", f"could not open a session: {error}",
                    "see the broker line above")
    client.loop_start()
    try:
        answered = connack.done.wait(context.timeout_s)
        if answered and connack.reason is not None and not connack.reason.is_failure:
            client.disconnect()
    finally:
        client.loop_stop()
    elapsed = time.monotonic() - started
    if not answered or connack.reason is None:
        return fail("login", f"the broker did not answer the login within "
                    f"{context.timeout_s:g} s", "check the broker's log for this client")
    reason = connack.reason
    if reason.is_failure:
        # Mosquitto answers a wrong password, a deleted login and a client id other than
        # the one the login is pinned to alike (Not authorized, or Bad user name or
        # password): the fix covers the three.
        fix = ("if this gateway was revoked or replaced, " + ENROL_AGAIN + "; otherwise "
               "correct [mqtt].password (or VITRINA_EDGE_MQTT_PASSWORD in edge.env) and "
               "leave [mqtt].client_id as enrolment wrote it")
        return fail("login", f"the broker refused the login as {user}: {reason}", fix)
    return ok("login", f"the broker accepted the login as {user} (client id "
              f"{settings.client_id}) in {elapsed:.2f} s")
