"""The Kotlin and Swift snippets of docs/app-guide.md against the API's OpenAPI document.

They cannot be compiled here, so each call they make through the guide's small client
(`vitrina.call(method, path, body)`, `vitrina.callUrl(url, body)`) is read out of the
source: its method and path must be an operation of the API, and its body, with sample
values put where the snippet has variables, must validate against that operation's
request schema. The web snippets run against a real API instead
(tests/cloud/api/test_web_app_client.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema_rs import Draft202012Validator

from cloud.api import create_app
from cloud.api.access import CUSTOMER_TOKEN_HEADER
from cloud.api.tracking import OpenReport
from tests.cloud.factories import cloud_settings
from tests.docs.snippets import Snippet, snippet, snippets

GUIDE = "docs/app-guide.md"
TENANT = "shop"
CUSTOMER_ID = "cus_" + "0123456789abcdef" * 2
OPEN_URL = "https://vitrina.shop.example/o/2kq9d8f7a6s5d4f3g2h1j0k9"

ANDROID = (
    "app-android-client", "app-android-installation", "app-android-sign-in",
    "app-android-consent", "app-android-fcm", "app-android-location", "app-android-beacon",
    "app-android-opened", "app-android-store-beacon",
)
IOS = (
    "app-ios-client", "app-ios-installation", "app-ios-sign-in", "app-ios-consent",
    "app-ios-fcm", "app-ios-location", "app-ios-beacon", "app-ios-opened",
    "app-ios-store-beacon",
)
CLIENTS = ("app-android-client", "app-ios-client")

#: What the snippets' variables hold, by the expression's text, for the bodies.
SAMPLES: Mapping[str, Any] = {
    # Kotlin
    "Locale.getDefault().toLanguageTag()": "es-ES",
    "TimeZone.getDefault().id": "Europe/Madrid",
    "installationId": "cus_" + "fedcba9876543210" * 2,
    "granted": True,
    "token": "cW3kZ9v0Qx2:APA91bHfake-registration-token_0123456789",
    "location.latitude": 40.4168,
    "location.longitude": -3.7038,
    "location.accuracy": 12.5,
    "Instant.ofEpochMilli(location.time).toString()": "2026-11-24T10:09:00Z",
    "installId": "a1b2c3d4",
    "openedAt": "2026-11-24T10:12:00Z",
    'intent.getStringExtra("open_url")!!': OPEN_URL,
    "STORE_BEACON_UUID.toString()": "e2c56db5-dffb-48d2-b060-d0f5a71096e0",
    "beacon.major": 4660,
    "beacon.minor": 43981,
    "result.rssi": -67,
    "Instant.now().toString()": "2026-11-24T10:14:00Z",
    # Swift
    'Locale.preferredLanguages.first ?? "en"': "es-ES",
    "TimeZone.current.identifier": "Europe/Madrid",
    "fcmToken": "cW3kZ9v0Qx2:APA91bHfake-registration-token_0123456789",
    "location.coordinate.latitude": 40.4168,
    "location.coordinate.longitude": -3.7038,
    "location.horizontalAccuracy": 12.5,
    "ISO8601DateFormatter().string(from: location.timestamp)": "2026-11-24T10:09:00Z",
    "openUrl": OPEN_URL,
    "storeBeaconUUID.uuidString": "E2C56DB5-DFFB-48D2-B060-D0F5A71096E0",
    "beacon.major.intValue": 4660,
    "beacon.minor.intValue": 43981,
    "beacon.rssi": -67,
    "proximityName(beacon.proximity)": "near",
    "ISO8601DateFormatter().string(from: beacon.timestamp)": "2026-11-24T10:14:00Z",
}
#: What the variables in paths hold.
PATH_SAMPLES: Mapping[str, str] = {"customerId": CUSTOMER_ID, "messageId": "42"}
#: Operations that read their body themselves, so the document has no schema for it: the
#: model they read it with stands in.
BODY_MODELS: Mapping[tuple[str, str], dict[str, Any]] = {
    ("post", "/o/{token}"): OpenReport.model_json_schema(),
}


@dataclass(frozen=True, slots=True)
class Call:
    """One request a snippet makes, with sample values in place of its variables."""

    method: str
    path: str
    body: Any


# --- reading Kotlin and Swift ----------------------------------------------------------------


def _string_end(text: str, start: int) -> int:
    """The index after the string literal opening at `start` (escapes skipped)."""
    index = start + 1
    while text[index] != '"':
        index += 2 if text[index] == "\\" else 1
    return index + 1


def _split(text: str, start: int, closer: str) -> tuple[list[str], int]:
    """The comma-separated items from `start` to the `closer` that ends them, and the index
    after it; brackets and string literals nest."""
    items, depth, index, begin = [], 0, start, start
    while True:
        char = text[index]
        if char == '"':
            index = _string_end(text, index)
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                assert char == closer, f"expected {closer!r} at {text[begin:index + 1]!r}"
                items.append(text[begin:index].strip())
                return [item for item in items if item], index + 1
            depth -= 1
        elif char == "," and depth == 0:
            items.append(text[begin:index].strip())
            begin = index + 1
        index += 1


def _top_level(text: str, separator: str) -> tuple[str, str]:
    """`text` split at the first `separator` outside brackets and strings."""
    depth, index = 0, 0
    while index < len(text):
        char = text[index]
        if char == '"':
            index = _string_end(text, index)
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(separator, index):
            return text[:index].strip(), text[index + len(separator):].strip()
        index += 1
    raise AssertionError(f"no {separator!r} in {text!r}")


def _string(literal: str) -> str:
    """A string literal's text, its interpolations (`$name`, `${name}`, `\\(name)`)
    replaced by the path samples."""
    assert literal.startswith('"'), literal
    assert literal.endswith('"'), literal
    inner = literal[1:-1]

    def sample(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return PATH_SAMPLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)|\\\((\w+)\)", sample, inner)


def _value(source: str) -> Any:
    """A Kotlin (`mapOf("k" to v)`) or Swift (`["k": v]`) value as JSON."""
    if source.startswith("mapOf("):
        entries, _ = _split(source, len("mapOf("), ")")
        return dict(_entry(entry, " to ") for entry in entries)
    if source.startswith("[") and source.endswith("]"):
        entries, _ = _split(source, 1, "]")
        return dict(_entry(entry, ":") for entry in entries)
    if source.startswith('"') and _string_end(source, 0) == len(source):
        return _string(source)
    if source in ("true", "false"):
        return source == "true"
    if re.fullmatch(r"-?\d+(\.\d+)?", source):
        return float(source) if "." in source else int(source)
    if source not in SAMPLES:
        pytest.fail(f"no sample value for the expression {source!r}: add one to SAMPLES")
    return SAMPLES[source]


def _entry(source: str, separator: str) -> tuple[str, Any]:
    key, value = _top_level(source, separator)
    return _string(key), _value(value)


def calls_in(text: str) -> Iterator[Call]:
    """Every `.call(...)` and `.callUrl(...)` of a snippet's source."""
    for match in re.finditer(r"\.(call|callUrl)\(", text):
        args, _ = _split(text, match.end(), ")")
        if match.group(1) == "call":
            method, path, *rest = args
            yield Call(_string(method), f"/tenants/{TENANT}{_string(path)}",
                       _value(rest[0]) if rest else None)
        else:
            url, body = args
            yield Call("POST", urlsplit(str(_value(url))).path, _value(body))


# --- the API's document ----------------------------------------------------------------------


@cache
def document() -> dict[str, Any]:
    return create_app(cloud_settings(tenant=TENANT, database_url="sqlite://")).openapi()


def operation(call: Call) -> tuple[str, dict[str, Any]]:
    """The document's path template and operation that serve `call`."""
    for template, item in document()["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, call.path) and call.method.lower() in item:
            return template, item[call.method.lower()]
    pytest.fail(f"{call.method} {call.path}: no such operation in the API")


def request_schema(template: str, method: str, found: dict[str, Any]) -> dict[str, Any] | None:
    content = found.get("requestBody", {}).get("content", {}).get("application/json")
    if content is not None:
        return dict(content["schema"])
    return BODY_MODELS.get((method.lower(), template))


def check(call: Call) -> None:
    template, found = operation(call)
    schema = request_schema(template, call.method, found)
    if call.body is None:
        assert schema is None or not found.get("requestBody", {}).get("required"), (
            f"{call.method} {template} needs a body")
        return
    assert schema is not None, f"{call.method} {template} takes no body"
    validator = Draft202012Validator({**schema, "components": document()["components"]})
    problems = [f"{list(error.instance_path)}: {error.message}"
                for error in validator.iter_errors(call.body)]
    assert problems == [], f"{call.method} {template} {call.body}: {problems}"


# --- the tests -------------------------------------------------------------------------------


def _ids(language: str) -> tuple[str, ...]:
    return tuple(one.id or f"line {one.line}" for one in snippets(GUIDE)
                 if one.language == language)


def test_every_kotlin_and_swift_snippet_is_checked_here() -> None:
    assert _ids("kotlin") == ANDROID
    assert _ids("swift") == IOS


@pytest.mark.parametrize("snippet_id", [*ANDROID, *IOS])
def test_each_call_is_an_operation_of_the_api_with_a_valid_body(snippet_id: str) -> None:
    block: Snippet = snippet(GUIDE, snippet_id)
    made = list(calls_in(block.text))
    if snippet_id in CLIENTS:
        assert made == []
        return
    assert made, f"{snippet_id} calls nothing"
    for call in made:
        check(call)


@pytest.mark.parametrize("snippet_id", CLIENTS)
def test_the_clients_send_the_app_key_and_the_customer_token(snippet_id: str) -> None:
    text = snippet(GUIDE, snippet_id).text
    assert re.search(r'"\$apiBase/tenants/\$tenant\$path"|"\\\(apiBase\)/tenants/\\\(tenant\)'
                     r'\\\(path\)"', text)
    assert '"Authorization"' in text
    assert re.search(r'"Bearer (\$appKey|\\\(appKey\))"', text)
    assert f'"{CUSTOMER_TOKEN_HEADER}"' in text
    assert '"application/json"' in text


def test_the_store_beacon_snippets_ask_for_what_each_platform_requires() -> None:
    """What the platforms refuse to run without: the manifest's permissions and service
    type, the Info.plist's usage strings; the monitored UUID is the one the calls report;
    the enter reports what ranging read (the rotating part) and the exit may not."""
    manifest = snippet(GUIDE, "app-android-store-beacon-manifest").text
    for permission in ("BLUETOOTH_SCAN", "ACCESS_FINE_LOCATION", "ACCESS_BACKGROUND_LOCATION",
                       "FOREGROUND_SERVICE", "FOREGROUND_SERVICE_LOCATION"):
        assert f'"android.permission.{permission}"' in manifest, permission
    assert 'android:foregroundServiceType="location"' in manifest
    plist = snippet(GUIDE, "app-ios-store-beacon-plist").text
    for key in ("NSLocationWhenInUseUsageDescription",
                "NSLocationAlwaysAndWhenInUseUsageDescription"):
        assert f"<key>{key}</key>" in plist, key
    android = snippet(GUIDE, "app-android-store-beacon").text
    ios = snippet(GUIDE, "app-ios-store-beacon").text
    for text, monitor in ((android, "startScan("), (ios, "startMonitoring(for: storeRegion)")):
        assert monitor in text
        enter, leave = [call.body for call in calls_in(text)]
        assert (enter["event"], leave["event"]) == ("enter", "exit")
        assert {"major", "minor"} <= enter.keys()
        assert enter["uuid"].lower() == leave["uuid"].lower() == \
            "e2c56db5-dffb-48d2-b060-d0f5a71096e0"
    assert 'UUID.fromString("e2c56db5-dffb-48d2-b060-d0f5a71096e0")' in android
    assert 'UUID(uuidString: "E2C56DB5-DFFB-48D2-B060-D0F5A71096E0")' in ios
    assert "startRangingBeacons(satisfying: CLBeaconIdentityConstraint(" in ios


def test_the_reader_checks_what_it_is_shown() -> None:
    """The reading itself: a wrong body and a wrong path are caught."""
    wrong = list(calls_in('vitrina.call("POST", "/customers/$customerId/consent", '
                          'mapOf("channel" to "push", "granted" to "yes"))'))
    assert wrong == [Call("POST", f"/tenants/{TENANT}/customers/{CUSTOMER_ID}/consent",
                          {"channel": "push", "granted": "yes"})]
    with pytest.raises(AssertionError, match="granted"):
        check(wrong[0])
    swift = list(calls_in('try await vitrina.call("POST", "/customers/\\(customerId)/devices", '
                          '["kind": "fcm", "token": fcmToken, "extra": ["a": 1]])'))
    assert swift[0].body == {"kind": "fcm", "token": SAMPLES["fcmToken"], "extra": {"a": 1}}
    with pytest.raises(AssertionError):
        check(swift[0])
    with pytest.raises(pytest.fail.Exception, match="no such operation"):
        check(Call("POST", f"/tenants/{TENANT}/customers/{CUSTOMER_ID}/phones", {}))
