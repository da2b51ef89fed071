"""A local Firebase Cloud Messaging server: FCM HTTP v1 send plus Google's OAuth2 token endpoint.

firebase-admin talks to two Google services: the OAuth2 token endpoint (named by the
service-account file's `token_uri`), where it trades an RS256-signed JWT for an access
token, and `POST /v1/projects/{project}/messages:send`, which wants that token as a
Bearer credential. This server implements both, strictly enough that a wrong key, an
expired token, a malformed message or a misrouted project fails here as it would at
Google. It generates its own service account (an RSA key pair) whose `token_uri` points
at itself, so `credentials.Certificate` works unchanged.

Per-token outcomes can be scripted (success, UNREGISTERED, SENDER_ID_MISMATCH,
QUOTA_EXCEEDED with Retry-After, UNAVAILABLE, INVALID_ARGUMENT) to exercise the sender's
error handling. Every accepted message is recorded; `GET /_sandbox/messages` lists them
for a demo running in another process.

Run as a process: `python -m sandbox.fcm --port 8087 --project vitrina-demo
--credentials-out /tmp/fcm-sa.json` prints one JSON line (url, project, credentials path)
and serves until interrupted.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import secrets
import sys
import threading
import time
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

# make_token and validate_message are part of this module's API (tests and the demo).
from sandbox.fcm_message import MessageRejectedError, make_token, validate_message
from sandbox.web import (
    BadRequestError,
    Journal,
    OutcomeScript,
    Request,
    Response,
    Router,
    SandboxService,
    journal_page,
    json_response,
)

__all__ = [
    "GOOGLE_TOKEN_AUDIENCE",
    "JWT_BEARER_GRANT",
    "FcmSandbox",
    "MessageRejectedError",
    "Outcome",
    "ServiceAccount",
    "make_token",
    "validate_message",
    "verify_assertion",
]

#: The audience google-auth puts in every service-account assertion, whatever `token_uri` is.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Either scope lets a service account send FCM messages (firebase-admin asks for cloud-platform).
MESSAGING_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/firebase.messaging",
        "https://www.googleapis.com/auth/cloud-platform",
    }
)
#: Google refuses assertions valid for longer than an hour.
MAX_ASSERTION_LIFETIME_S = 3600
#: Clock skew Google tolerates between the signer's clock and its own.
CLOCK_SKEW_S = 300
#: Access tokens from Google last an hour; tests shorten it to exercise refresh.
DEFAULT_TOKEN_LIFETIME_S = 3600
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


class Outcome(StrEnum):
    """What the server answers for a scripted token."""

    SUCCESS = "SUCCESS"
    UNREGISTERED = "UNREGISTERED"
    SENDER_ID_MISMATCH = "SENDER_ID_MISMATCH"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True, slots=True)
class _ErrorShape:
    http_status: int
    status: str
    message: str


_ERRORS: Mapping[Outcome, _ErrorShape] = types.MappingProxyType(
    {
        Outcome.UNREGISTERED: _ErrorShape(404, "NOT_FOUND", "Requested entity was not found."),
        Outcome.SENDER_ID_MISMATCH: _ErrorShape(403, "PERMISSION_DENIED", "SenderId mismatch"),
        Outcome.QUOTA_EXCEEDED: _ErrorShape(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Send requests' of service fcm.",
        ),
        Outcome.UNAVAILABLE: _ErrorShape(
            503, "UNAVAILABLE", "The service is currently unavailable."
        ),
        Outcome.INVALID_ARGUMENT: _ErrorShape(
            400, "INVALID_ARGUMENT", "Request contains an invalid argument."
        ),
        Outcome.INTERNAL: _ErrorShape(500, "INTERNAL", "Internal error encountered."),
    }
)


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A Google service account whose private key this process made up."""

    project_id: str
    client_email: str
    client_id: str
    private_key_id: str
    private_key_pem: str

    @classmethod
    def generate(cls, project_id: str, *, name: str = "vitrina-push") -> ServiceAccount:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return cls(
            project_id=project_id,
            client_email=f"{name}@{project_id}.iam.gserviceaccount.com",
            client_id=str(secrets.randbelow(10**20)),
            private_key_id=secrets.token_hex(20),
            private_key_pem=pem,
        )

    def public_key(self) -> rsa.RSAPublicKey:
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):  # pragma: no cover - generate() makes RSA keys
            raise TypeError("service-account key is not RSA")
        return key.public_key()

    def info(self, token_uri: str) -> dict[str, str]:
        """The JSON Google issues for a service-account key, with `token_uri` pointing here."""
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": self.private_key_pem,
            "client_email": self.client_email,
            "client_id": self.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{self.client_email}",
            "universe_domain": "googleapis.com",
        }


class InvalidGrantError(ValueError):
    """The JWT assertion is not acceptable; the message is what Google says."""


def _b64url_decode(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidGrantError("Invalid JWT: not base64url") from exc


def verify_assertion(
    assertion: str,
    account: ServiceAccount,
    public_key: rsa.RSAPublicKey,
    *,
    audiences: frozenset[str],
    now: float | None = None,
) -> dict[str, Any]:
    """Check an RS256 service-account assertion the way Google's token endpoint does.

    Returns the claims; raises InvalidGrantError naming the first problem found.
    """
    parts = assertion.split(".")
    if len(parts) != 3:
        raise InvalidGrantError("Invalid JWT: expected three segments")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidGrantError("Invalid JWT: segments are not JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise InvalidGrantError("Invalid JWT: segments are not JSON objects")
    if header.get("alg") != "RS256":
        raise InvalidGrantError(f"Invalid JWT: alg must be RS256, got {header.get('alg')!r}")
    if header.get("kid") not in (None, account.private_key_id):
        raise InvalidGrantError("Invalid JWT Signature.")
    signature = _b64url_decode(parts[2])
    try:
        public_key.verify(
            signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature as exc:
        raise InvalidGrantError("Invalid JWT Signature.") from exc
    if claims.get("iss") != account.client_email:
        raise InvalidGrantError("Invalid grant: account not found")
    if claims.get("aud") not in audiences:
        raise InvalidGrantError(
            f"Invalid JWT: audience {claims.get('aud')!r} is not this token endpoint"
        )
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int):
        raise InvalidGrantError("Invalid JWT: iat and exp must be integers")
    current = time.time() if now is None else now
    if iat > current + CLOCK_SKEW_S or exp < current - CLOCK_SKEW_S:
        raise InvalidGrantError(
            "Invalid JWT: Token must be a short-lived token (60 minutes) "
            "and in a reasonable timeframe."
        )
    if exp - iat > MAX_ASSERTION_LIFETIME_S:
        raise InvalidGrantError("Invalid JWT: Token must be a short-lived token (60 minutes).")
    scopes = set(str(claims.get("scope", "")).split())
    if not scopes & MESSAGING_SCOPES:
        raise InvalidGrantError("Invalid scope: the assertion grants no messaging scope")
    return claims


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message the server accepted (what a device would receive)."""

    name: str
    project: str
    target: str
    message: dict[str, Any]
    received_at: float

    @property
    def token(self) -> str | None:
        value = self.message.get("token")
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class SendAttempt:
    """Any send request that reached the message handler, and what it was answered."""

    target: str
    http_status: int
    error_code: str | None
    at_monotonic: float


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """One call of the OAuth token endpoint; `error` is None when a token was issued."""

    client_email: str | None
    scope: str | None
    error: str | None


class FcmSandbox(SandboxService):
    """FCM v1 and OAuth2 token endpoint on a loopback port.

    In-process: `with FcmSandbox("proj") as fcm: fcm.write_credentials(path) ...`.
    """

    def __init__(
        self,
        project_id: str = "vitrina-demo",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        service_account: ServiceAccount | None = None,
        token_lifetime_s: int = DEFAULT_TOKEN_LIFETIME_S,
    ) -> None:
        self.project_id = project_id
        self.account = service_account or ServiceAccount.generate(project_id)
        self._public_key = self.account.public_key()
        self._token_lifetime_s = token_lifetime_s
        self._lock = threading.Lock()
        self._access_tokens: dict[str, float] = {}
        self._outcomes = OutcomeScript(Outcome.SUCCESS)
        #: Retry-After (seconds) sent with QUOTA_EXCEEDED and UNAVAILABLE; None sends none.
        self.retry_after_s: int | None = 1
        self.received: Journal[ReceivedMessage] = Journal()
        #: Regional-access-boundary lookups answered (google-auth makes one per token).
        self.boundary_lookups = 0
        self.attempts: Journal[SendAttempt] = Journal()
        self.token_requests: Journal[TokenRequest] = Journal()
        router = Router()
        router.add("POST", r"/token", self._handle_token)
        router.add("POST", r"/v1/projects/(?P<project>[^/]+)/messages:send", self._handle_send)
        router.add(
            "GET",
            r"/v1/projects/-/serviceAccounts/(?P<account>[^/]+)/allowedLocations",
            self._handle_allowed_locations,
        )
        router.add("GET", r"/_sandbox/messages", self._handle_list)
        router.add("POST", r"/_sandbox/script", self._handle_script)
        super().__init__(router, host=host, port=port, name="fcm")

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def credentials_info(self) -> dict[str, str]:
        return self.account.info(self.token_uri)

    def write_credentials(self, path: str | Path) -> Path:
        """Write the service-account JSON (private key inside: mode 0600)."""
        target = Path(path)
        target.write_text(json.dumps(self.credentials_info(), indent=2))
        target.chmod(0o600)
        return target

    # -- scripting ---------------------------------------------------------------------------

    def script(self, token: str, *outcomes: Outcome, then: Outcome = Outcome.SUCCESS) -> None:
        """Answer the next sends to `token` with `outcomes` in order, then `then` for ever."""
        self._outcomes.set(token, outcomes, then)

    def expire_access_tokens(self) -> None:
        """Forget every issued access token, as if they had all expired."""
        with self._lock:
            self._access_tokens.clear()

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[ReceivedMessage]:
        return self.received.wait_for(count, timeout_s, what="FCM messages")

    # -- OAuth2 token endpoint ---------------------------------------------------------------

    def _handle_token(self, request: Request) -> Response:
        form = parse_qs(request.body.decode("utf-8", "replace"))
        grant_type = form.get("grant_type", [""])[0]
        assertion = form.get("assertion", [""])[0]
        if grant_type != JWT_BEARER_GRANT:
            self.token_requests.append(TokenRequest(None, None, "unsupported_grant_type"))
            return json_response(
                400, {"error": "unsupported_grant_type", "error_description": grant_type}
            )
        try:
            claims = verify_assertion(
                assertion,
                self.account,
                self._public_key,
                audiences=frozenset({GOOGLE_TOKEN_AUDIENCE, self.token_uri}),
            )
        except InvalidGrantError as exc:
            self.token_requests.append(TokenRequest(None, None, str(exc)))
            return json_response(400, {"error": "invalid_grant", "error_description": str(exc)})
        access_token = "ya29.sandbox-" + secrets.token_urlsafe(48)
        with self._lock:
            self._access_tokens[access_token] = time.monotonic() + self._token_lifetime_s
        self.token_requests.append(TokenRequest(str(claims["iss"]), str(claims["scope"]), None))
        return json_response(
            200,
            {
                "access_token": access_token,
                "expires_in": self._token_lifetime_s,
                "token_type": "Bearer",
            },
        )

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.header("Authorization").partition(" ")
        if scheme != "Bearer" or not token:
            return False
        with self._lock:
            expiry = self._access_tokens.get(token)
        return expiry is not None and expiry > time.monotonic()

    # -- IAM credentials: regional access boundary ----------------------------------------

    def _handle_allowed_locations(self, request: Request) -> Response:
        """google-auth asks Google's IAM credentials API where a service account may be used
        after it gets a token. This server's accounts are unrestricted: the no-op boundary."""
        if not self._authorized(request):
            return _google_error(401, "UNAUTHENTICATED", "Expected OAuth 2 access token.")
        if request.params["account"] != self.account.client_email:
            return _google_error(404, "NOT_FOUND", "Service account not found.")
        with self._lock:
            self.boundary_lookups += 1
        return json_response(200, {"locations": [], "encodedLocations": "0x0"})

    # -- FCM v1 send -------------------------------------------------------------------------

    def _handle_send(self, request: Request) -> Response:
        if not self._authorized(request):
            return _google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        project = request.params["project"]
        if project != self.project_id:
            return _google_error(
                403, "PERMISSION_DENIED", f"Permission denied on project {project}."
            )
        body = request.json()
        if not isinstance(body, dict) or "message" not in body:
            return self._reject(
                "", MessageRejectedError("message", "Request must contain a message")
            )
        unknown = set(body) - {"message", "validate_only"}
        if unknown:
            return self._reject(
                "", MessageRejectedError(sorted(unknown)[0], "Unknown name: Cannot find field.")
            )
        try:
            target = validate_message(body["message"])
        except MessageRejectedError as exc:
            return self._reject("", exc)
        message: dict[str, Any] = body["message"]
        outcome = self._outcomes.next(str(message.get("token") or message.get("fid") or ""))
        if outcome is not Outcome.SUCCESS:
            return self._scripted_error(target, outcome)
        name = f"projects/{project}/messages/0:{time.time_ns() // 1000}%{secrets.token_hex(8)}"
        if body.get("validate_only") is True:
            name = f"projects/{project}/messages/fake_message_id"
        else:
            self.received.append(ReceivedMessage(name, project, target, message, time.time()))
        self.attempts.append(SendAttempt(target, 200, None, time.monotonic()))
        return json_response(200, {"name": name})

    def _reject(self, target: str, exc: MessageRejectedError) -> Response:
        self.attempts.append(SendAttempt(target, 400, "INVALID_ARGUMENT", time.monotonic()))
        return _google_error(
            400,
            "INVALID_ARGUMENT",
            exc.description,
            details=[
                {"@type": FCM_ERROR_TYPE, "errorCode": "INVALID_ARGUMENT"},
                {
                    "@type": BAD_REQUEST_TYPE,
                    "fieldViolations": [{"field": exc.field, "description": exc.description}],
                },
            ],
        )

    def _scripted_error(self, target: str, outcome: Outcome) -> Response:
        shape = _ERRORS[outcome]
        headers: dict[str, str] = {}
        if (
            outcome in (Outcome.QUOTA_EXCEEDED, Outcome.UNAVAILABLE)
            and self.retry_after_s is not None
        ):
            headers["Retry-After"] = str(self.retry_after_s)
        self.attempts.append(
            SendAttempt(target, shape.http_status, outcome.value, time.monotonic())
        )
        return _google_error(
            shape.http_status,
            shape.status,
            shape.message,
            details=[{"@type": FCM_ERROR_TYPE, "errorCode": outcome.value}],
            headers=headers,
        )

    # -- inspection for other processes ------------------------------------------------------

    def _handle_list(self, request: Request) -> Response:
        return journal_page(
            request,
            self.received,
            key="messages",
            describe=lambda m: {
                "name": m.name,
                "target": m.target,
                "message": m.message,
                "received_at": m.received_at,
            },
        )

    def _handle_script(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            raise BadRequestError('expected {"token": str, "outcomes": [..], "then": ..}')
        try:
            outcomes = [Outcome(value) for value in body.get("outcomes", [])]
            then = Outcome(body.get("then", Outcome.SUCCESS.value))
        except ValueError as exc:
            raise BadRequestError(f"unknown outcome: {exc}") from exc
        self.script(body["token"], *outcomes, then=then)
        return Response(204)


def _google_error(
    http_status: int,
    status: str,
    message: str,
    *,
    details: Sequence[dict[str, Any]] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    error: dict[str, Any] = {"code": http_status, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return json_response(http_status, {"error": error}, headers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.fcm", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--project", default="vitrina-demo")
    parser.add_argument(
        "--credentials-out", required=True, help="where to write the service-account JSON"
    )
    args = parser.parse_args(argv)
    sandbox = FcmSandbox(args.project, host=args.host, port=args.port)
    path = sandbox.write_credentials(args.credentials_out)
    print(
        json.dumps({"url": sandbox.url, "project": args.project, "credentials": str(path)}),
        flush=True,
    )
    sandbox.serve_until_terminated()
    return 0


if __name__ == "__main__":
    sys.exit(main())
