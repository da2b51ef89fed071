"""Guarded sessions against real local servers: a name that resolves inside is refused
before any connection, the connection goes to the address checked (DNS rebinding cannot
move it), a redirect into a forbidden target is not followed, and allow-listed local
servers are reached as any other."""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from cloud.outbound import AllowList, OutboundPolicy, RefusedTargetError, guarded_session
from cloud.outbound.policy import IPAddress
from tests.cloud.delivery.shop_endpoint import ShopEndpoint

#: A name no resolver of this machine knows: only a pinned connection can reach it.
SHOP = "shop.invalid"


@pytest.fixture
def shop() -> Iterator[ShopEndpoint]:
    with ShopEndpoint() as endpoint:
        yield endpoint


class ScriptedResolver:
    """Answers each lookup with the next scripted address (the last one repeats), as a
    DNS server under someone else's control could; counts the lookups."""

    def __init__(self, *answers: str) -> None:
        self.answers = [ipaddress.ip_address(answer) for answer in answers]
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        return [self.answers[min(len(self.lookups), len(self.answers)) - 1]]


def port_of(endpoint: ShopEndpoint) -> int:
    return int(endpoint.url("/").rsplit(":", 1)[1].split("/")[0])


def test_a_name_resolving_to_loopback_is_refused_before_connecting(shop: ShopEndpoint) -> None:
    resolver = ScriptedResolver("127.0.0.1")
    with guarded_session(OutboundPolicy(resolver=resolver)) as session, \
            pytest.raises(RefusedTargetError) as refused:
        session.post(f"https://{SHOP}:{port_of(shop)}/hook", data=b"{}", timeout=5)
    assert "resolves to 127.0.0.1, which is loopback" in str(refused.value)
    assert resolver.lookups == [SHOP]
    assert shop.received == []


def test_the_connection_goes_to_the_address_checked_not_a_later_answer(
    shop: ShopEndpoint
) -> None:
    """Rebinding: the first answer is allowed (127.0.0.1, allow-listed for the test), the
    next ones private. The request reaches the server through the checked address with
    its own name in Host, after one lookup; the next request meets the new answer and is
    refused before connecting."""
    resolver = ScriptedResolver("127.0.0.1", "10.0.0.1")
    policy = OutboundPolicy(allow=AllowList.parse(["127.0.0.1/32"]), resolver=resolver)
    url = f"http://{SHOP}:{port_of(shop)}/hook"
    with guarded_session(policy) as session:
        assert session.post(url, data=b"{}", timeout=5).status_code == 200
        assert resolver.lookups == [SHOP]
        with pytest.raises(RefusedTargetError, match=r"10\.0\.0\.1, which is private"):
            session.post(url, data=b"{}", timeout=5)
    [received] = shop.received
    assert received.headers["host"] == f"{SHOP}:{port_of(shop)}"
    assert resolver.lookups == [SHOP, SHOP]


def test_a_redirect_into_a_forbidden_target_is_not_followed(shop: ShopEndpoint) -> None:
    """Only the first server's host:port is allowed; its 307 points at another local
    server, which gets nothing."""
    with ShopEndpoint() as inside:
        shop.script("/hook", (307, {"Location": inside.url("/admin")}))
        policy = OutboundPolicy(allow=AllowList.parse([f"127.0.0.1:{port_of(shop)}"]))
        with guarded_session(policy) as session, \
                pytest.raises(RefusedTargetError, match=r"127\.0\.0\.1 is loopback"):
            session.post(shop.url("/hook"), data=b"{}", timeout=5)
        assert [request.path for request in shop.received] == ["/hook"]
        assert inside.received == []


def test_allow_listed_local_servers_work_and_others_stay_refused(shop: ShopEndpoint) -> None:
    policy = OutboundPolicy(allow=AllowList.parse([f"127.0.0.1:{port_of(shop)}"]))
    with guarded_session(policy) as session:
        assert session.post(shop.url("/ok"), data=b"x", timeout=5).status_code == 200
        with pytest.raises(RefusedTargetError):
            session.post(f"http://127.0.0.1:{port_of(shop) + 1}/ok", data=b"x", timeout=5)
        with pytest.raises(requests.ConnectionError, match="does not resolve"):
            session.post("https://unknown-host.invalid/", data=b"x", timeout=5)
    assert [request.path for request in shop.received] == ["/ok"]


class HangingResolver:
    """A DNS server that never answers (until the test lets it go)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.release.wait(30)
        return [ipaddress.ip_address("93.184.215.14")]


def test_a_resolver_that_hangs_fails_the_send_for_now_after_the_time_out(
    shop: ShopEndpoint,
) -> None:
    """The send is not held for as long as the resolver keeps quiet: after the time-out it
    fails as a name that does not resolve now does (a passing failure, retried later),
    not as a refusal; the server is never called."""
    resolver = HangingResolver()
    policy = OutboundPolicy(resolver=resolver, resolve_timeout_s=0.2)
    try:
        with guarded_session(policy) as session:
            started = time.monotonic()
            with pytest.raises(requests.exceptions.ConnectionError,
                               match=re.escape(f"{SHOP} did not resolve within 0.2 s")) as failed:
                session.post(f"https://{SHOP}:{port_of(shop)}/hook", data=b"{}", timeout=5)
            assert time.monotonic() - started < 2
            assert not isinstance(failed.value, RefusedTargetError)
    finally:
        resolver.release.set()
    assert shop.received == []

