"""Request sizes: a body larger than its route takes is refused (413, JSON) before it is
read, over a real server and a raw socket; headers too large are refused, not buffered.

The server is the production one (`running_api` serves with `api_server_config`), so
what is proven here is what a client meets.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.api.limits import LIMIT_KEY, MIB
from cloud.api.templates import TEMPLATE_BODY_LIMIT
from cloud.api.webhooks import WEBHOOK_ADAPTER, WEBHOOK_BODY_LIMIT
from cloud.templates.spec import TemplateSpec
from provisioning.local_broker import free_port
from tests.cloud.factories import bearer, cloud_settings, issue_key
from tests.cloud.running import running_api

#: What a client would send in all: refused long before that.
HUGE = 200 * MIB
#: The default limit (`api.max_body_bytes`).
DEFAULT = 256 * 1024
#: The pace of the slow sender: a chunk, then a pause.
CHUNK, PAUSE_S = 16 * 1024, 0.002



@pytest.fixture
def api(engine: Engine, migrated_url: str, tenant: str) -> Iterator[tuple[str, int, str]]:
    """The API on a real port: (tenant, port, an admin key)."""
    settings = cloud_settings(tenant=tenant, database_url=migrated_url,
                              webhook_secrets=["whsec-0123456789abcdef"])
    app = create_app(settings, engine=engine)
    key = issue_key(engine, tenant=tenant)
    port = free_port()
    with running_api(app, port):
        yield tenant, port, key


def request_head(method: str, path: str, key: str, *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {key}",
             "Content-Type: application/json", *extra, "", ""]
    return "\r\n".join(lines).encode()


def response_of(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def send_slowly(sock: socket.socket, head: bytes, chunks: Iterator[bytes], *,
                deadline_s: float = 20.0) -> tuple[bytes, int]:
    """Send the head, then the chunks one by one with a pause, reading whatever the server
    answers between them; stop at its answer (or when it closes). Returns the answer and
    how many bytes of body were sent."""
    sock.sendall(head)
    sent = 0
    answer = b""
    deadline = time.monotonic() + deadline_s
    for chunk in chunks:
        assert time.monotonic() < deadline, f"no answer after {sent} bytes of body"
        readable, _, _ = select.select([sock], [], [], PAUSE_S)
        if readable:
            break
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(chunk)
    with contextlib.suppress(ConnectionResetError):
        sock.settimeout(5)
        while data := sock.recv(65536):
            answer += data
            if b"\r\n\r\n" in answer:
                _status, headers, body = response_of(answer)
                if len(body) >= int(headers.get("content-length", "0")):
                    break
    return answer, sent


def filler(total: int, *, chunked: bool = False) -> Iterator[bytes]:
    piece = b"x" * CHUNK
    for _ in range(total // CHUNK):
        yield f"{CHUNK:x}\r\n".encode() + piece + b"\r\n" if chunked else piece


def connection_closed(sock: socket.socket) -> bool:
    """The server closed the connection (after what it still had to send) within 5 s."""
    sock.settimeout(5)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("migrated_url", ["sqlite"], indirect=True)
def test_a_200_mb_body_is_refused_on_its_declared_length_before_it_is_sent(
    api: tuple[str, int, str],
) -> None:
    tenant, port, key = api
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        answer, sent = send_slowly(
            sock, request_head("POST", f"/tenants/{tenant}/customers", key,
                               f"Content-Length: {HUGE}"),
            filler(HUGE),
        )
        status, headers, body = response_of(answer)
        assert status == 413
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        assert json.loads(body) == {"detail": (
            f"request body too large: POST /tenants/{tenant}/customers takes at most "
            f"{DEFAULT} bytes; nothing was processed")}
        # Answered on the headers: at most the few chunks sent before the answer arrived.
        assert sent < DEFAULT, sent
        assert time.monotonic() - started < 10
        assert connection_closed(sock)


@pytest.mark.parametrize("migrated_url", ["sqlite"], indirect=True)
def test_a_chunked_body_without_a_length_is_cut_off_once_it_passes_the_limit(
    api: tuple[str, int, str],
) -> None:
    tenant, port, key = api
    with socket.create_connection(("127.0.0.1", port)) as sock:
        answer, sent = send_slowly(
            sock, request_head("POST", f"/tenants/{tenant}/customers", key,
                               "Transfer-Encoding: chunked"),
            filler(HUGE, chunked=True),
        )
        status, _headers, body = response_of(answer)
        assert status == 413, answer[:300]
        assert "at most 262144 bytes" in json.loads(body)["detail"]
        # Refused once the count passed the limit: what was sent beyond it is what the
        # sockets' buffers held meanwhile, nowhere near the 200 MB.
        assert DEFAULT < sent < DEFAULT + 8 * MIB, sent
        assert connection_closed(sock)


@pytest.mark.parametrize("migrated_url", ["sqlite"], indirect=True)
def test_headers_too_large_are_refused_not_buffered(api: tuple[str, int, str]) -> None:
    tenant, port, key = api
    # Arriving slowly, piece by piece: the server stops buffering at the limit (400 from
    # h11) and closes, long before the megabyte of one header's value is all sent.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        answer, sent = send_slowly(
            sock, request_head("GET", f"/tenants/{tenant}/customers", key)[:-2]
            + b"X-Padding: ", (b"p" * CHUNK for _ in range(MIB // CHUNK)),
        )
        assert response_of(answer)[0] == 400
        assert sent < 4 * DEFAULT, sent
        assert time.monotonic() - started < 10
        assert connection_closed(sock)
    # Complete in one piece (which the server may take whole): 431 from the API.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        answer, _sent = send_slowly(sock, request_head(
            "GET", f"/tenants/{tenant}/customers", key, f"X-Padding: {'p' * 20 * 1024}"),
            iter(()))
        status, _headers, body = response_of(answer)
        assert status == 431
        assert json.loads(body) == {"detail": "request headers too large: at most 16384 "
                                              "bytes with the request line"}
        assert connection_closed(sock)
    # Headers of an ordinary size (a JWT and a session cookie) go through.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        answer, _sent = send_slowly(sock, request_head(
            "GET", f"/tenants/{tenant}/customers", key, f"X-Customer-Token: {'t' * 4096}",
            f"Cookie: vitrina_session={'s' * 64}", "Connection: close"), iter(()))
        assert response_of(answer)[0] == 200


@pytest.mark.parametrize("migrated_url", ["sqlite"], indirect=True)
def test_a_route_that_takes_more_declares_it_next_to_itself(
    engine: Engine, migrated_url: str, tenant: str,
) -> None:
    """The webhooks take up to 1 MiB (an order of 500 lines); other routes 256 KiB. The
    limit of each operation is in the OpenAPI document."""
    settings = cloud_settings(tenant=tenant, database_url=migrated_url,
                              webhook_secrets=["whsec-0123456789abcdef"])
    app = create_app(settings, engine=engine)
    body = b"{" + b" " * (DEFAULT + 10) + b"}"
    with TestClient(app, headers=bearer(issue_key(engine, tenant=tenant))) as client:
        # Past the default but within the webhooks' own: read, then refused for its
        # signature, not its size.
        assert client.post(f"/webhooks/{tenant}", content=body).status_code == 401
        assert client.post(f"/tenants/{tenant}/customers", content=body).status_code == 413
        big = b"{" + b" " * WEBHOOK_BODY_LIMIT + b"}"
        refused = client.post(f"/webhooks/{tenant}", content=big)
        assert refused.status_code == 413
        assert f"takes at most {WEBHOOK_BODY_LIMIT} bytes" in refused.json()["detail"]
        paths = client.get("/openapi.json").json()["paths"]
    assert paths["/webhooks/{tenant}"]["post"][LIMIT_KEY] == WEBHOOK_BODY_LIMIT
    assert paths["/tenants/{tenant}/customers"]["post"][LIMIT_KEY] == DEFAULT
    assert "413" in paths["/tenants/{tenant}/customers"]["post"]["responses"]


def test_the_largest_legitimate_bodies_fit_their_routes_limits() -> None:
    """Sized from what the models accept at most, in multi-byte text: an order of 500
    lines, and a template at its longest parts."""
    wide = "\U0001f9fa"  # four bytes in UTF-8 (ids are ASCII by their patterns)
    line = {"sku": "s" * 128, "name": wide * 200, "category": "c" * 128,
            "quantity": 10_000, "unit_price": str(Decimal("9999999999.99"))}
    order = {
        "type": "order.created", "event_id": "e" * 128, "occurred_at": "2026-11-23T11:00:00Z",
        "customer": {"external_id": "x" * 128, "email": "a" * 64 + "@" + "b" * 185 + ".com"},
        "order_id": "o" * 128, "currency": "EUR", "total": "999999999999.99",
        "items": [line] * 500, "coupons": ["C" * 32] * 20,
    }
    WEBHOOK_ADAPTER.validate_python(order)  # legitimate: the model takes it
    # As UTF-8, and as an encoder that escapes everything beyond ASCII writes it.
    assert len(json.dumps(order, ensure_ascii=False).encode()) < WEBHOOK_BODY_LIMIT
    assert len(json.dumps(order).encode()) < WEBHOOK_BODY_LIMIT

    wide = "\u20ac"
    parts = {"subject": wide * 1_000, "html": wide * 200_000, "text": wide * 100_000}
    TemplateSpec.model_validate({"channel": "email", "locale": "es-ES", "parts": parts})
    assert len(json.dumps({"parts": parts}).encode()) < TEMPLATE_BODY_LIMIT
