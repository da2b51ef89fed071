"""Tracking tokens and the links made from them."""

from __future__ import annotations

import pytest

from cloud.messages.tokens import (
    MAX_LINK_CHARS,
    TOKEN_RE,
    new_tracking_token,
    open_pixel_url,
    tracked_link,
    unsubscribe_url,
)


def test_tokens_are_short_url_safe_deterministic_and_keyed() -> None:
    token = new_tracking_token("j42:cross-sell", "secret")

    assert TOKEN_RE.fullmatch(token)
    assert len(token) == 16
    assert new_tracking_token("j42:cross-sell", b"secret") == token
    assert new_tracking_token("j42:cross-sell", "another secret") != token
    assert new_tracking_token("j43:cross-sell", "secret") != token
    assert len({new_tracking_token(f"key-{n}", "secret") for n in range(2000)}) == 2000
    with pytest.raises(ValueError, match="empty"):
        new_tracking_token("", "secret")
    with pytest.raises(ValueError, match="secret"):
        new_tracking_token("key", "")


def test_links_fit_the_template_field_and_refuse_what_would_not() -> None:
    token = new_tracking_token("key", "secret")
    base = "https://vtr.example.com/"

    assert tracked_link(base, token) == f"https://vtr.example.com/c/{token}"
    assert open_pixel_url(base, token) == f"https://vtr.example.com/o/{token}.gif"
    assert unsubscribe_url(base, token) == f"https://vtr.example.com/u/{token}"
    longest = "https://" + "v" * (MAX_LINK_CHARS - len("https:///c/") - len(token))
    assert len(tracked_link(longest, token)) == MAX_LINK_CHARS
    with pytest.raises(ValueError, match="at most 60"):
        tracked_link(longest + "v", token)
    with pytest.raises(ValueError, match="tracking token"):
        tracked_link(base, "../../admin")
    with pytest.raises(ValueError, match="absolute"):
        tracked_link("javascript:alert(1)", token)
