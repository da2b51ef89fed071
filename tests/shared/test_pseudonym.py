from datetime import date

import pytest

from shared.errors import ContractError
from shared.identifiers import wifi_identifier
from shared.pseudonym import Pseudonymizer, TenantKey, split_pseudonym

KEY = TenantKey.from_text("k1", "11" * 32)
OTHER_KEY = TenantKey.from_text("k2", "22" * 32)
IDENTIFIER = wifi_identifier("00:1a:11:00:00:01")


def test_stable_pseudonym_is_deterministic_and_tagged() -> None:
    pseudonym = Pseudonymizer(KEY).stable(IDENTIFIER)
    assert pseudonym == Pseudonymizer(KEY).stable(IDENTIFIER)
    key_id, digest = split_pseudonym(pseudonym)
    assert key_id == "k1"
    assert len(digest) == 32
    assert "00:1a:11" not in pseudonym


def test_different_keys_give_unlinkable_pseudonyms() -> None:
    first, second = (
        Pseudonymizer(KEY).stable(IDENTIFIER),
        Pseudonymizer(OTHER_KEY).stable(IDENTIFIER),
    )
    assert split_pseudonym(first)[1] != split_pseudonym(second)[1]


def test_daily_pseudonym_changes_every_day_and_differs_from_stable() -> None:
    pseudonymizer = Pseudonymizer(KEY)
    monday = pseudonymizer.daily(IDENTIFIER, date(2026, 11, 23))
    assert monday == pseudonymizer.daily(IDENTIFIER, date(2026, 11, 23))
    assert monday != pseudonymizer.daily(IDENTIFIER, date(2026, 11, 24))
    assert monday != pseudonymizer.stable(IDENTIFIER)


def test_key_text_may_be_hex_or_base64() -> None:
    assert (
        TenantKey.from_text("k1", "ERERERERERERERERERERERERERERERERERERERERERE=").secret
        == b"\x11" * 32
    )


@pytest.mark.parametrize(
    ("key_id", "secret", "message"),
    [
        ("k1", "00" * 8, "must be 16-64 bytes"),
        ("K1", "00" * 32, "key id must be"),
        ("k1", "zz not a key", "neither hex nor base64"),
    ],
)
def test_bad_keys_are_rejected(key_id: str, secret: str, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        TenantKey.from_text(key_id, secret)


def test_secret_is_not_in_repr() -> None:
    assert "1111" not in repr(KEY)


@pytest.mark.parametrize("text", ["k1:abc", "k1-" + "0" * 32, "K1:" + "0" * 32])
def test_malformed_pseudonyms_are_rejected(text: str) -> None:
    with pytest.raises(ContractError):
        split_pseudonym(text)
