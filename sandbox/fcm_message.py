"""What FCM HTTP v1 accepts as a `message`: the checks the local FCM server makes.

Strict enough that a message FCM would refuse (unknown field, bad token, reserved data
key, oversized payload, bad Android TTL or APNs header) is refused here too, with the
field path FCM reports in its BadRequest detail.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

#: FCM rejects a message whose payload (data and notification) exceeds 4 KB.
MAX_PAYLOAD_BYTES = 4096
#: Keys FCM reserves in `data` (it rejects the message rather than silently drop them).
RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})
RESERVED_DATA_PREFIXES = ("google.", "gcm.")
#: A registration token is "<installation id>:<opaque>" in URL-safe base64 characters.
TOKEN_RE = re.compile(r"[A-Za-z0-9_\-]{11,64}:[A-Za-z0-9_\-]{20,4096}")
#: A Firebase installation id: 22 URL-safe base64 characters, first nibble 0111.
FID_RE = re.compile(r"[cdef][A-Za-z0-9_\-]{21}")
TOPIC_RE = re.compile(r"(/topics/)?[a-zA-Z0-9\-_.~%]{1,900}")
#: Android TTL is a protobuf Duration in JSON: seconds with an optional fraction, then "s".
DURATION_RE = re.compile(r"\d{1,11}(\.\d{1,9})?s")
#: FCM caps Android TTL at four weeks.
MAX_ANDROID_TTL_S = 28 * 24 * 3600

MESSAGE_FIELDS = frozenset(
    {
        "name",
        "data",
        "notification",
        "android",
        "webpush",
        "apns",
        "fcm_options",
        "token",
        "topic",
        "condition",
        "fid",
    }
)
TARGET_FIELDS = ("token", "topic", "condition", "fid")
NOTIFICATION_FIELDS = frozenset({"title", "body", "image"})
ANDROID_FIELDS = frozenset(
    {
        "collapse_key",
        "priority",
        "ttl",
        "restricted_package_name",
        "data",
        "notification",
        "fcm_options",
        "direct_boot_ok",
        "bandwidth_constrained_ok",
        "restricted_satellite_ok",
    }
)
APNS_FIELDS = frozenset({"headers", "payload", "fcm_options", "live_activity_token"})
WEBPUSH_FIELDS = frozenset({"headers", "data", "notification", "fcm_options"})


class MessageRejectedError(ValueError):
    """The message is invalid; `field` is the path FCM reports in its BadRequestError detail."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


def _check_object(value: Any, path: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MessageRejectedError(path, "must be an object")
    for key in value:
        if key not in allowed:
            raise MessageRejectedError(
                path, f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
            )
    return value


def _check_string_map(value: Any, path: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise MessageRejectedError(path, "must be a map of string to string")
    for key, item in value.items():
        if not isinstance(item, str):
            raise MessageRejectedError(
                f"{path}[{key}]", f"Invalid value at '{path}[{key}]': expected a string"
            )
    return value


def _check_data(value: Any, path: str) -> dict[str, str]:
    data = _check_string_map(value, path)
    for key in data:
        if key in RESERVED_DATA_KEYS or key.startswith(RESERVED_DATA_PREFIXES):
            raise MessageRejectedError(f"{path}[{key}]", f"Invalid data payload key: {key}")
    return data


def _check_notification(value: Any, path: str) -> None:
    notification = _check_object(value, path, NOTIFICATION_FIELDS)
    for key, item in notification.items():
        if not isinstance(item, str):
            raise MessageRejectedError(f"{path}.{key}", "must be a string")
    image = notification.get("image")
    if image is not None and not image.startswith(("https://", "http://")):
        raise MessageRejectedError(f"{path}.image", "must be an http(s) URL")


def _check_android(value: Any) -> None:
    android = _check_object(value, "message.android", ANDROID_FIELDS)
    priority = android.get("priority")
    if priority is not None and str(priority).upper() not in ("NORMAL", "HIGH"):
        raise MessageRejectedError(
            "message.android.priority", f"Invalid value {priority!r}: NORMAL or HIGH"
        )
    ttl = android.get("ttl")
    if ttl is not None:
        if not isinstance(ttl, str) or not DURATION_RE.fullmatch(ttl):
            raise MessageRejectedError("message.android.ttl", f"Invalid duration {ttl!r}")
        if float(ttl[:-1]) > MAX_ANDROID_TTL_S:
            raise MessageRejectedError("message.android.ttl", "TTL exceeds four weeks")
    if "data" in android:
        _check_data(android["data"], "message.android.data")
    if "notification" in android and not isinstance(android["notification"], dict):
        raise MessageRejectedError("message.android.notification", "must be an object")


def _check_apns(value: Any) -> None:
    apns = _check_object(value, "message.apns", APNS_FIELDS)
    headers = _check_string_map(apns.get("headers", {}), "message.apns.headers")
    priority = headers.get("apns-priority")
    if priority is not None and priority not in ("1", "5", "10"):
        raise MessageRejectedError("message.apns.headers[apns-priority]", "must be 1, 5 or 10")
    expiration = headers.get("apns-expiration")
    if expiration is not None and not expiration.isdigit():
        raise MessageRejectedError(
            "message.apns.headers[apns-expiration]", "must be a UNIX epoch date in seconds"
        )
    payload = apns.get("payload")
    if payload is not None:
        if not isinstance(payload, dict):
            raise MessageRejectedError("message.apns.payload", "must be an object")
        if "aps" in payload and not isinstance(payload["aps"], dict):
            raise MessageRejectedError("message.apns.payload.aps", "must be an object")


def _check_webpush(value: Any) -> None:
    webpush = _check_object(value, "message.webpush", WEBPUSH_FIELDS)
    if "headers" in webpush:
        _check_string_map(webpush["headers"], "message.webpush.headers")
    if "data" in webpush:
        _check_data(webpush["data"], "message.webpush.data")
    link = (
        webpush.get("fcm_options", {}).get("link")
        if isinstance(webpush.get("fcm_options"), dict)
        else None
    )
    if link is not None and not str(link).startswith("https://"):
        raise MessageRejectedError("message.webpush.fcm_options.link", "must be an HTTPS URL")


def validate_message(message: Any) -> str:
    """Check a v1 `message` like FCM does; return its target ("token:…", "topic:…", …)."""
    message = _check_object(message, "message", MESSAGE_FIELDS)
    targets = [name for name in TARGET_FIELDS if name in message]
    if len(targets) != 1:
        raise MessageRejectedError(
            "message", "exactly one of token, topic, condition or fid must be set"
        )
    kind = targets[0]
    target = message[kind]
    if not isinstance(target, str) or not target:
        raise MessageRejectedError(f"message.{kind}", "must be a non-empty string")
    if kind == "token" and not TOKEN_RE.fullmatch(target):
        raise MessageRejectedError(
            "message.token", "The registration token is not a valid FCM registration token"
        )
    if kind == "fid" and not FID_RE.fullmatch(target):
        raise MessageRejectedError("message.fid", "not a valid Firebase installation ID")
    if kind == "topic" and not TOPIC_RE.fullmatch(target):
        raise MessageRejectedError("message.topic", "Invalid topic name")
    if "data" in message:
        _check_data(message["data"], "message.data")
    if "notification" in message:
        _check_notification(message["notification"], "message.notification")
    if "android" in message:
        _check_android(message["android"])
    if "apns" in message:
        _check_apns(message["apns"])
    if "webpush" in message:
        _check_webpush(message["webpush"])
    size = len(
        json.dumps(
            {k: message.get(k) for k in ("data", "notification")}, separators=(",", ":")
        ).encode()
    )
    if size > MAX_PAYLOAD_BYTES:
        raise MessageRejectedError(
            "message", f"Message is too big: {size} bytes, limit {MAX_PAYLOAD_BYTES}"
        )
    return f"{kind}:{target}"


def make_token(label: str = "") -> str:
    """A registration token shaped like the ones FCM issues to apps (for tests and the demo)."""
    fid = "c" + secrets.token_urlsafe(16)[:21]
    tail = "APA91b" + (label.replace(":", "_") + "_" if label else "") + secrets.token_urlsafe(100)
    return f"{fid}:{tail}"
