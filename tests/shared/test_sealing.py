"""Sealed tenant keys: only the gateway they were sealed to opens them, only as the key
and config version they were sealed for, and nothing changed on the way is accepted."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import ContractError
from shared.pseudonym import TenantKey
from shared.sealing import (
    MAX_SEALED_CHARS,
    SealContext,
    SealedKey,
    load_private_key,
    new_private_key,
    open_key,
    parse_public_key,
    private_key_pem,
    public_key_text,
    seal_key,
)

KEY = TenantKey.from_text("k2", "a5" * 32)
GATEWAY = new_private_key()
CONTEXT = SealContext(tenant="acme", store="madrid-1", gateway="gw-1", config_version=7)


def sealed(context: SealContext = CONTEXT, key: TenantKey = KEY) -> SealedKey:
    return seal_key(key, recipient=parse_public_key(public_key_text(GATEWAY)), context=context)


def test_a_sealed_key_opens_on_its_gateway_and_its_text_does_not_hold_the_secret() -> None:
    text = sealed().to_text()
    assert text.startswith("v1.k2.")
    assert len(text) <= MAX_SEALED_CHARS
    assert KEY.secret.hex() not in text
    opened = open_key(SealedKey.from_text(text), private_key=GATEWAY, context=CONTEXT)
    assert opened == KEY
    assert sealed().to_text() != text  # a fresh ephemeral key every time


@pytest.mark.parametrize("change", [
    pytest.param({"gateway": "gw-2"}, id="another gateway"),
    pytest.param({"store": "bilbao-1"}, id="another store"),
    pytest.param({"tenant": "other"}, id="another tenant"),
    pytest.param({"config_version": 8}, id="another config version"),
])
def test_a_seal_opens_only_in_the_context_it_was_made_for(change: dict[str, object]) -> None:
    with pytest.raises(ContractError, match="does not open on this gateway"):
        open_key(sealed(), private_key=GATEWAY,
                 context=dataclasses.replace(CONTEXT, **change))  # type: ignore[arg-type]


def test_another_gateways_private_key_cannot_open_it() -> None:
    with pytest.raises(ContractError, match="does not open"):
        open_key(sealed(), private_key=new_private_key(), context=CONTEXT)


def test_a_relabelled_or_tampered_seal_is_refused() -> None:
    original = sealed()
    relabelled = dataclasses.replace(original, key_id="k1")
    flipped = bytearray(original.ciphertext)
    flipped[3] ^= 0x01
    tampered = dataclasses.replace(original, ciphertext=bytes(flipped))
    other_ephemeral = dataclasses.replace(original, ephemeral_public=sealed().ephemeral_public)
    for bad in (relabelled, tampered, other_ephemeral):
        with pytest.raises(ContractError, match="does not open"):
            open_key(bad, private_key=GATEWAY, context=CONTEXT)


def test_the_private_key_round_trips_as_pem_and_the_public_part_as_text() -> None:
    loaded = load_private_key(private_key_pem(GATEWAY).encode())
    assert public_key_text(loaded) == public_key_text(GATEWAY)
    assert len(public_key_text(GATEWAY)) == 43
    with pytest.raises(ContractError):
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    for bad in ("", "a" * 42, "!" * 43, public_key_text(GATEWAY) + "A"):
        with pytest.raises(ContractError):
            parse_public_key(bad)


@pytest.mark.parametrize(("text", "message"), [
    ("v2.k2.AAAA.AAAA", "format v2 is not supported"),
    ("k2.AAAA.AAAA", "must be 'v1."),
    ("x1.k2.AAAA.AAAA", "must start with its format"),
    ("v1.K2!.AAAA.AAAA", "key id"),
    ("v1.k2.AA=A.AAAA", "not base64url"),
    ("v1.k2.AAAA.AAAA", "ephemeral public key must be 32 bytes"),
    ("v1." + "k" * 300, "longer than"),
])
def test_malformed_texts_are_refused_without_echoing_them(text: str, message: str) -> None:
    with pytest.raises(ContractError, match=message) as raised:
        SealedKey.from_text(text)
    assert "AAAA" not in str(raised.value)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=240),
    st.builds(lambda parts: ".".join(parts), st.lists(
        st.text(alphabet="v1k2-_AZaz09=.", max_size=60), min_size=1, max_size=6)),
    st.binary(max_size=64).map(lambda data: sealed().to_text()[:-8] + data.hex()[:8]),
))
def test_the_parser_takes_any_text_and_either_parses_it_or_refuses_it_clearly(
    text: str
) -> None:
    try:
        parsed = SealedKey.from_text(text)
    except ContractError:
        return
    assert SealedKey.from_text(parsed.to_text()) == parsed
    with pytest.raises(ContractError):  # whatever parses still opens only if genuine
        open_key(parsed, private_key=GATEWAY, context=CONTEXT)
