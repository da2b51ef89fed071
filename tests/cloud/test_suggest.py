"""The nearest valid name is offered for a slip, and nothing for a different word."""

from __future__ import annotations

from cloud.suggest import did_you_mean, nearest

EVENTS = ["cart.abandoned", "order.created", "presence.enter", "presence.exit"]


def test_a_slip_finds_the_name_meant() -> None:
    assert nearest("cart.abandon", EVENTS) == "cart.abandoned"
    assert nearest("presense.enter", EVENTS) == "presence.enter"
    assert did_you_mean("order.creatd", EVENTS) == " (did you mean 'order.created'?)"


def test_an_unrelated_word_gets_no_suggestion() -> None:
    assert nearest("birthday", EVENTS) is None
    assert did_you_mean("x", EVENTS) == ""
    assert did_you_mean("anything", []) == ""
