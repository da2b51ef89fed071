"""Which URLs the orchestrator may send requests to on behalf of a tenant or an app.

A scenario's webhook URL is typed in by a tenant's admin, and a Web Push endpoint is
handed in by any app holding the tenant's public app key; the delivery worker then posts
there from inside the operator's network. Left unchecked, that is a way to reach what
only the orchestrator can reach: the cloud's metadata service (169.254.169.254), the
database, the broker, anything on 10/8 or on localhost.

The rules, applied when such a URL is saved (`OutboundPolicy.check_url`, no DNS) and
again when a request goes out (`OutboundPolicy.pin`, which resolves the name once):

- the URL is read the way browsers read it (WHATWG, through ada): every spelling of a
  host comes out in one canonical form before anything is decided, so `2130706433`,
  `0x7f.1`, `0177.0.0.1`, `127.1`, full-width digits and percent-escapes are all
  127.0.0.1, IDNA names are punycode, and a zone id (`[fe80::1%25eth0]`) is not a URL;
- https only, and no credentials in the URL;
- the host may not be `localhost` (or a name under it, RFC 6761), nor be or resolve to
  an address that is not globally reachable: loopback, private, link-local, multicast,
  reserved, unspecified, shared (CGNAT, 100.64/10), documentation and the like, also
  when carried inside an IPv6 address (IPv4-mapped, 6to4, NAT64);
- every address a name resolves to must pass, and the connection goes to the address
  that was checked (`cloud.outbound.http` pins it), so a second DNS answer cannot move
  the request elsewhere (DNS rebinding). A name that does not resolve within
  `resolve_timeout_s` counts as not resolving now: a passing failure, not a refusal.

The allow-list (`outbound.allow`) lifts the rules for named targets, for tests against
local servers and for on-premise shops whose endpoints live on a private network: a
network in CIDR form allows its addresses (and plain http to them), a `host:port` allows
exactly that host and port, whatever it resolves to.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import ada_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Resolves a host name (and port) to the addresses a connection could go to.
Resolver = Callable[[str, int], Sequence[IPAddress]]

#: The port each scheme implies when the URL gives none.
DEFAULT_PORTS = {"https": 443, "http": 80}
#: Shared address space (RFC 6598): carrier-grade NAT, often a provider's internal
#: services; ipaddress calls it neither private nor global, so it is named here.
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
#: NAT64's well-known prefix (RFC 6052): a gateway translates the last 32 bits into an
#: IPv4 destination, which must pass the IPv4 rules.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
#: Names that always mean this machine (RFC 6761 §6.3), whatever DNS says.
LOCAL_NAMES = ("localhost",)
#: A name that has not resolved after this long is taken as not resolving now (a passing
#: failure, tried again later): the system resolver has no time-out of its own that the
#: caller sets, and one broken DNS server would otherwise hold a delivery thread for as
#: long as it keeps quiet. Five seconds is the resolver's own default wait per server.
RESOLVE_TIMEOUT_S = 5.0
#: Lookups run on threads of their own, at most this many at once, so that the sender
#: can stop waiting for one. A lookup past its time-out keeps its thread until the
#: resolver gives up; when every one is held that way, further lookups wait for a free
#: one no longer than their own time-out, so a dead resolver costs a bounded number of
#: threads, not one per send.
LOOKUP_THREADS = 16
_LOOKUP_SLOTS = threading.BoundedSemaphore(LOOKUP_THREADS)


class Rule(StrEnum):
    """Which rule a URL broke; named in every refusal, in the API's 422 and in metrics."""

    SYNTAX = "syntax"
    SCHEME = "scheme"
    CREDENTIALS = "credentials"
    LOCAL_NAME = "local_name"
    ADDRESS = "address"


class OutboundRefusedError(ValueError):
    """A URL the orchestrator will not send to; `rule` says which rule, the message why."""

    def __init__(self, rule: Rule, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


class UnresolvedHostError(OSError):
    """The host name did not resolve now: a passing failure, unlike a refusal."""


@dataclass(frozen=True, slots=True)
class Target:
    """A URL as it will be requested: `url` is the canonical form (what goes on the
    wire), `host` the name without brackets or trailing dot (for SNI, the certificate
    and the Host header), `address` set when the host is an IP address."""

    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress | None

    @property
    def authority(self) -> str:
        """The Host header's value: the port only when it is not the scheme's own."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS.get(self.scheme) == self.port else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PinnedTarget:
    """A target whose host was resolved and checked: connect to `address`, only."""

    target: Target
    address: IPAddress


def forbidden_kind(address: IPAddress) -> str | None:
    """What makes `address` unfit for a request on someone else's behalf, or None when it
    is a globally reachable unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            kind = forbidden_kind(embedded)
            return f"{kind} (as {embedded} inside an IPv6 address)" if kind else None
    checks: tuple[tuple[bool, str], ...] = (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address in SHARED_ADDRESS_SPACE, "shared (carrier-grade NAT)"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "not globally reachable"),
    )
    return next((kind for found, kind in checks if found), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 destination an IPv6 address stands for, if it is one of the forms that
    carry one (IPv4-mapped, 6to4, NAT64)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def resolve_system(host: str, port: int) -> list[IPAddress]:
    """The addresses the system resolver gives for `host`, as a TCP client would get
    them; raises UnresolvedHostError."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnresolvedHostError(f"{host} does not resolve: {error}") from None
    return [ipaddress.ip_address(str(entry[4][0])) for entry in found]


def resolve_within(resolver: Resolver, host: str, port: int, timeout_s: float
                   ) -> list[IPAddress]:
    """`resolver`'s answer for `host`, or UnresolvedHostError once `timeout_s` passed
    without one (see `RESOLVE_TIMEOUT_S`, `LOOKUP_THREADS`)."""
    deadline = time.monotonic() + timeout_s
    late = UnresolvedHostError(f"{host} did not resolve within {timeout_s:g} s")
    if not _LOOKUP_SLOTS.acquire(timeout=timeout_s):
        raise late
    answer: list[list[IPAddress] | BaseException] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            answer.append(list(resolver(host, port)))
        except BaseException as error:  # handed to the waiting caller
            answer.append(error)
        finally:
            _LOOKUP_SLOTS.release()
            done.set()

    threading.Thread(target=lookup, name="outbound-dns", daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise late
    found = answer[0]
    if isinstance(found, BaseException):
        raise found
    return found


def read_url(url: str) -> Target:
    """Parse `url` as a browser would and give its canonical parts; raises
    OutboundRefusedError (syntax, scheme, credentials) for what no rule can allow."""
    try:
        parsed = ada_url.URL(url)
    except ValueError:
        raise OutboundRefusedError(Rule.SYNTAX, "is not a valid absolute URL") from None
    scheme = parsed.protocol.rstrip(":")
    if scheme not in DEFAULT_PORTS:
        raise OutboundRefusedError(Rule.SCHEME, f"must be an https URL, not {scheme}:")
    if parsed.username or parsed.password:
        raise OutboundRefusedError(Rule.CREDENTIALS, "must not carry a user name or password")
    host = parsed.hostname.removeprefix("[").removesuffix("]").rstrip(".")
    if not host:
        raise OutboundRefusedError(Rule.SYNTAX, "has no host")
    port = int(parsed.port) if parsed.port else DEFAULT_PORTS[scheme]
    try:
        address: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    return Target(parsed.href, scheme, host, port, address)


@dataclass(frozen=True, slots=True)
class AllowList:
    """Targets the rules do not apply to (module docstring): networks, and exact
    (host, port) pairs with the host in canonical form."""

    networks: tuple[IPNetwork, ...] = ()
    endpoints: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Read `outbound.allow`; raises ValueError naming the entry that is neither a
        network nor a host:port."""
        networks: list[IPNetwork] = []
        endpoints: set[tuple[str, int]] = set()
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip()))
                continue
            except ValueError:
                pass
            endpoints.add(_endpoint(entry))
        return cls(tuple(networks), frozenset(endpoints))

    def allows_endpoint(self, target: Target) -> bool:
        return (target.host, target.port) in self.endpoints

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def _endpoint(entry: str) -> tuple[str, int]:
    """A `host:port` entry in the canonical form `read_url` gives targets."""
    problem = (f"{entry!r} is neither a network (CIDR, e.g. 10.20.0.0/16, host bits zero)"
               " nor a host:port (e.g. push.shop.internal:8443)")
    try:
        parsed = ada_url.URL(f"https://{entry.strip()}/")
    except ValueError:
        raise ValueError(problem) from None
    explicit_port = entry.strip().rsplit(":", 1)[-1]
    if not explicit_port.isdigit() or parsed.pathname != "/" or parsed.username:
        raise ValueError(problem)
    host = parsed.hostname.removeprefix("[").removesuffix("]").rstrip(".")
    return host, int(explicit_port)


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """The rules of the module docstring with one allow-list and one resolver."""

    allow: AllowList = field(default_factory=AllowList)
    resolver: Resolver = resolve_system
    #: How long a send waits for its host name to resolve (`RESOLVE_TIMEOUT_S`).
    resolve_timeout_s: float = RESOLVE_TIMEOUT_S

    def check_url(self, url: str) -> Target:
        """The save-time check: everything that can be told without DNS (syntax, scheme,
        credentials, local names, literal addresses in any spelling). Raises
        OutboundRefusedError."""
        target = read_url(url)
        if self.allow.allows_endpoint(target):
            return target
        if target.address is not None:
            self._check_address(target, target.address)
        elif _local_name(target.host):
            raise OutboundRefusedError(Rule.LOCAL_NAME, f"{target.host} names this machine")
        if target.scheme != "https" and not (
            target.address is not None and self.allow.allows_address(target.address)
        ):
            raise OutboundRefusedError(Rule.SCHEME, "must be an https URL")
        return target

    def pin(self, url: str) -> PinnedTarget:
        """The send-time check: `check_url`, then resolve the host once and check every
        address it gives; the first one is where the request must go. Raises
        OutboundRefusedError, or UnresolvedHostError when the name does not resolve now."""
        target = read_url(url)
        if self.allow.allows_endpoint(target):
            return PinnedTarget(target, self._addresses(target)[0])
        if target.address is None and _local_name(target.host):
            raise OutboundRefusedError(Rule.LOCAL_NAME, f"{target.host} names this machine")
        addresses = [target.address] if target.address is not None else self._addresses(target)
        for address in addresses:
            self._check_address(target, address)
        if target.scheme != "https" and not all(map(self.allow.allows_address, addresses)):
            raise OutboundRefusedError(Rule.SCHEME, "must be an https URL")
        return PinnedTarget(target, addresses[0])

    def _addresses(self, target: Target) -> list[IPAddress]:
        if target.address is not None:
            return [target.address]
        found = resolve_within(self.resolver, target.host, target.port,
                               self.resolve_timeout_s)
        if not found:
            raise UnresolvedHostError(f"{target.host} resolves to no address")
        return found

    def _check_address(self, target: Target, address: IPAddress) -> None:
        if self.allow.allows_address(address):
            return
        kind = forbidden_kind(address)
        if kind is not None:
            named = "is" if target.address is not None else f"resolves to {address}, which is"
            raise OutboundRefusedError(Rule.ADDRESS, f"{target.host} {named} {kind}: only"
                                  " globally reachable addresses are sent to")


def _local_name(host: str) -> bool:
    return any(host == name or host.endswith(f".{name}") for name in LOCAL_NAMES)
