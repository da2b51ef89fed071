"""requests sessions that send only where `OutboundPolicy` allows, to the address it
checked.

`PinnedAdapter` is a requests transport adapter (requests' documented way to own how a
request is sent). For each request, and so for each hop of a redirect that requests
follows, it asks the policy for a pinned target, sends the canonical URL, and takes its
connection from a urllib3 pool keyed by the checked address, with the host name kept
for what the name is needed for: TLS's server name (SNI), the certificate check and the
Host header. The HTTP library never resolves the name itself, so the address that
connects is the one that was checked.

A guarded session reads no proxy from the environment: a proxy would resolve the name
again, on its own.
"""

from __future__ import annotations

import threading
from typing import Any

import requests
import requests.adapters
from urllib3.connectionpool import HTTPConnectionPool

from cloud.outbound.policy import (
    OutboundPolicy,
    OutboundRefusedError,
    PinnedTarget,
    UnresolvedHostError,
)


class RefusedTargetError(requests.exceptions.InvalidURL):
    """The policy refused the request's URL; `refusal` says which rule and why."""

    def __init__(self, refusal: OutboundRefusedError, *args: Any, **kwargs: Any) -> None:
        super().__init__(str(refusal), *args, **kwargs)
        self.refusal = refusal


class PinnedAdapter(requests.adapters.HTTPAdapter):
    """Sends each request to the address the policy checked for it (module docstring)."""

    def __init__(self, policy: OutboundPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy
        #: The pin of the request this thread is sending: `send` sets it for
        #: `get_connection_with_tls_context`, which requests calls in between.
        self._current = threading.local()

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
             ) -> requests.Response:
        try:
            pinned = self.policy.pin(request.url or "")
        except OutboundRefusedError as refusal:
            raise RefusedTargetError(refusal, request=request) from None
        except UnresolvedHostError as error:
            raise requests.exceptions.ConnectionError(str(error), request=request) from None
        request.url = pinned.target.url
        request.headers["Host"] = pinned.target.authority
        self._current.pinned = pinned
        try:
            return super().send(request, *args, **kwargs)
        finally:
            self._current.pinned = None

    def get_connection_with_tls_context(
        self, request: requests.PreparedRequest, verify: bool | str,
        proxies: dict[str, str] | None = None, cert: Any = None,
    ) -> HTTPConnectionPool:
        """A pool for the checked address; TLS names and verifies the host name."""
        pinned: PinnedTarget | None = getattr(self._current, "pinned", None)
        if pinned is None:
            raise RuntimeError("PinnedAdapter sends only through send()")
        _, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        target = pinned.target
        if target.scheme == "https":
            pool_kwargs = {**pool_kwargs, "server_hostname": target.host,
                           "assert_hostname": target.host}
        return self.poolmanager.connection_from_host(
            str(pinned.address), port=target.port, scheme=target.scheme,
            pool_kwargs=pool_kwargs,
        )


def guarded_session(policy: OutboundPolicy, **adapter_kwargs: Any) -> requests.Session:
    """A requests session whose every request, redirects included, goes through
    `PinnedAdapter`; `adapter_kwargs` are HTTPAdapter's (pool_maxsize, max_retries)."""
    session = requests.Session()
    session.trust_env = False
    adapter = PinnedAdapter(policy, **adapter_kwargs)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
