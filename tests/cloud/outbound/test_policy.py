"""The outbound rules on URLs alone: every hostile spelling refused at save time, public
https accepted, the allow-list's two forms, and the checker fuzzed."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.provisional import urls

from cloud.outbound import (
    AllowList,
    OutboundPolicy,
    OutboundRefusedError,
    Rule,
    UnresolvedHostError,
    resolve_within,
)
from cloud.outbound.policy import IPAddress

POLICY = OutboundPolicy()

#: (URL, the rule it breaks): what an admin or an app could type to reach inside.
HOSTILE = [
    ("https://169.254.169.254/latest/meta-data/", Rule.ADDRESS),
    ("https://10.0.0.5/hook", Rule.ADDRESS),
    ("https://172.16.3.4/", Rule.ADDRESS),
    ("https://192.168.1.1/", Rule.ADDRESS),
    ("https://127.0.0.1/", Rule.ADDRESS),
    ("https://2130706433/", Rule.ADDRESS),  # 127.0.0.1 as one decimal number
    ("https://0x7f000001/", Rule.ADDRESS),  # ... as one hex number
    ("https://0x7f.1/", Rule.ADDRESS),  # hex, short form
    ("https://0177.0.0.1/", Rule.ADDRESS),  # octal
    ("https://127.1/", Rule.ADDRESS),  # short form
    ("https://0xa9fea9fe/", Rule.ADDRESS),  # 169.254.169.254 in hex
    ("https://%31%32%37.0.0.1/", Rule.ADDRESS),  # percent-escaped digits
    ("https://\uff11\uff12\uff17.0.0.1/", Rule.ADDRESS),  # full-width digits
    ("https://0/", Rule.ADDRESS),  # 0.0.0.0
    ("https://[::1]/", Rule.ADDRESS),
    ("https://[::]/", Rule.ADDRESS),
    ("https://[::ffff:127.0.0.1]/", Rule.ADDRESS),  # IPv4-mapped
    ("https://[::ffff:a9fe:a9fe]/", Rule.ADDRESS),  # mapped metadata service
    ("https://[2002:7f00:1::]/", Rule.ADDRESS),  # 6to4 of 127.0.0.1
    ("https://[64:ff9b::a00:1]/", Rule.ADDRESS),  # NAT64 of 10.0.0.1
    ("https://[fe80::1]/", Rule.ADDRESS),
    ("https://[fd00::1]/", Rule.ADDRESS),  # unique local
    ("https://[ff02::1]/", Rule.ADDRESS),  # multicast
    ("https://224.0.0.251/", Rule.ADDRESS),
    ("https://100.64.0.1/", Rule.ADDRESS),  # CGNAT
    ("https://240.0.0.1/", Rule.ADDRESS),  # reserved
    ("https://255.255.255.255/", Rule.ADDRESS),
    ("https://192.0.2.7/", Rule.ADDRESS),  # documentation
    ("https://127.0.0.1.:8443/", Rule.ADDRESS),  # trailing dot
    ("https://localhost/", Rule.LOCAL_NAME),
    ("https://LOCALHOST./", Rule.LOCAL_NAME),
    ("https://api.localhost/", Rule.LOCAL_NAME),
    ("https://[fe80::1%25eth0]/", Rule.SYNTAX),  # zone id
    ("https://exa mple.com/", Rule.SYNTAX),
    ("not a url", Rule.SYNTAX),
    ("http://shop.example/hook", Rule.SCHEME),
    ("ftp://shop.example/", Rule.SCHEME),
    ("file:///etc/passwd", Rule.SCHEME),
    ("gopher://127.0.0.1:6379/", Rule.SCHEME),
    ("https://user:pw@shop.example/", Rule.CREDENTIALS),
    ("https://shop.example@127.0.0.1/", Rule.CREDENTIALS),
]


@pytest.mark.parametrize(("url", "rule"), HOSTILE)
def test_every_spelling_of_an_inside_target_is_refused_when_saved(url: str, rule: Rule
                                                                  ) -> None:
    with pytest.raises(OutboundRefusedError) as refused:
        POLICY.check_url(url)
    assert refused.value.rule is rule


@pytest.mark.parametrize(("url", "canonical"), [
    ("https://shop.example/hooks/vitrina", "https://shop.example/hooks/vitrina"),
    ("https://SHOP.example:8443/h?x=1", "https://shop.example:8443/h?x=1"),
    ("https://b\u00fccher.example/", "https://xn--bcher-kva.example/"),
    ("https://8.8.8.8/", "https://8.8.8.8/"),
    ("https://[2606:4700:4700::1111]/", "https://[2606:4700:4700::1111]/"),
])
def test_public_https_targets_pass_in_their_canonical_form(url: str, canonical: str) -> None:
    assert POLICY.check_url(url).url == canonical


def test_the_allow_list_lifts_the_rules_for_its_networks_and_endpoints_only() -> None:
    """A name resolving to 10.99.0.1 is allowed on the port its entry names, not on
    another; a network allows its own addresses, not their neighbours."""
    policy = OutboundPolicy(
        allow=AllowList.parse(["10.20.0.0/16", "push.shop.internal:8443"]),
        resolver=lambda host, port: _resolver("10.99.0.1"),
    )
    assert policy.check_url("http://10.20.1.2:8080/hook").port == 8080  # http too
    assert str(policy.pin("https://push.shop.internal:8443/p").address) == "10.99.0.1"
    with pytest.raises(OutboundRefusedError, match=r"10\.99\.0\.1, which is private"):
        policy.pin("https://push.shop.internal/p")
    for still_refused in ("https://10.21.0.1/", "https://127.0.0.1/"):
        with pytest.raises(OutboundRefusedError):
            policy.check_url(still_refused)


@pytest.mark.parametrize("entry", ["10.0.0.1/8", "shop.example", "shop.example:http",
                                   "shop.example:1/p", ""])
def test_an_allow_list_entry_in_neither_form_is_refused_naming_it(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a network"):
        AllowList.parse([entry])


def _resolver(*answers: str) -> list[IPAddress]:
    return [ipaddress.ip_address(answer) for answer in answers]


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    mixed = OutboundPolicy(resolver=lambda host, port: _resolver("93.184.215.14", "10.0.0.1"))
    with pytest.raises(OutboundRefusedError, match=r"resolves to 10\.0\.0\.1, which is private"):
        mixed.pin("https://shop.example/hook")
    public = OutboundPolicy(resolver=lambda host, port: _resolver("93.184.215.14"))
    pinned = public.pin("https://shop.example/hook")
    assert (str(pinned.address), pinned.target.authority) == ("93.184.215.14", "shop.example")


def test_a_lookup_that_fails_or_answers_in_time_is_passed_on_as_it_is() -> None:
    def failing(host: str, port: int) -> list[IPAddress]:
        raise UnresolvedHostError(f"{host} does not resolve")

    with pytest.raises(UnresolvedHostError, match=r"shop\.example does not resolve"):
        OutboundPolicy(resolver=failing, resolve_timeout_s=1).pin("https://shop.example/")
    assert resolve_within(lambda host, port: _resolver("93.184.215.14"), "shop.example", 443,
                          1.0) == _resolver("93.184.215.14")


@settings(max_examples=400, deadline=None)
@given(st.one_of(urls(), st.text(max_size=80),
                 st.builds("https://{}/".format, st.text(max_size=40))))
def test_the_checker_only_ever_refuses_with_its_own_error(url: str) -> None:
    """Whatever it is given, the checker returns a target or raises OutboundRefusedError:
    never another exception a caller would turn into a 500."""
    try:
        target = POLICY.check_url(url)
    except OutboundRefusedError:
        return
    assert target.scheme == "https"
    assert target.address is None or ipaddress.ip_address(target.address).is_global
