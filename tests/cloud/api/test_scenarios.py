"""Scenarios over HTTP: saved, read back and saved again unchanged, switched off and on
again, and refused with each problem placed at the step and field it concerns."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.metrics import REGISTRY
from tests.cloud.factories import bearer, cloud_settings, issue_key
from tests.cloud.offers.factories import offer_body

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PUSH = {"parts": {"title": "Hola {{ customer.first_name }}", "body": "Tu carrito te espera"}}


def cart(**changes: Any) -> dict[str, Any]:
    """Every kind of jump: a wait, a wait for an order with its yes and no, a branch."""
    document: dict[str, Any] = {
        "key": "cart", "name": "Cart reminder",
        "entry": {"event": "cart.abandoned", "cooldown": "P1D"},
        "conditions": {"not": {"tag": "staff"}},
        "exit_on": ["order.created"], "holdout_percent": 10,
        "variants": [{"key": "a"}, {"key": "b", "weight": 2}],
        "caps": [{"max": 2, "per": "P7D"}],
        "steps": [
            {"id": "pause", "type": "wait", "for": "PT15M"},
            {"id": "remind", "type": "send", "channels": ["push"], "template": "cart",
             "offer": {"key": "dryers-20"}, "coupon": {"valid_for": "PT24H"},
             "variants": {"b": {"template": "cart"}}},
            {"id": "bought", "type": "wait_for", "event": "order.created", "timeout": "P1D",
             "yes": "thank", "no": "vip"},
            {"id": "vip", "type": "branch", "if": {"tag": "vip"}, "then": "credit",
             "else": "end"},
            {"id": "credit", "type": "loyalty_credit", "amount": "5.00", "currency": "EUR",
             "next": "end"},
            {"id": "thank", "type": "tag", "add": ["buyer"]},
        ],
    }
    document.update(changes)
    return document


@pytest.fixture
def client(engine: Engine, migrated_url: str, tenant: str) -> Iterator[TestClient]:
    """The tenant's admin, with the template and offer the scenario names."""
    settings = cloud_settings(tenant=tenant, database_url=migrated_url)
    app = create_app(settings, engine=engine, now=lambda: NOW)
    with TestClient(app, headers=bearer(issue_key(engine, tenant=tenant))) as test_client:
        saved = test_client.put(f"/tenants/{tenant}/templates/cart/push/es-ES", json=PUSH)
        assert saved.status_code == 200, saved.text
        offered = test_client.put(f"/tenants/{tenant}/offers/dryers-20", json=offer_body())
        assert offered.status_code == 201, offered.text
        yield test_client


def test_a_scenario_read_back_saves_again_unchanged_and_is_switched_off_and_on(
    client: TestClient, tenant: str
) -> None:
    url = f"/tenants/{tenant}/scenarios/cart"
    saved = client.put(url, json=cart())
    assert saved.status_code == 200, saved.text
    assert (saved.json()["version"], saved.json()["active"]) == (1, True)
    read = client.get(url).json()
    assert read["spec"]["steps"][0] == {"id": "pause", "type": "wait", "for": "PT15M",
                                        "next": None}
    assert read["spec"]["conditions"] == {"not": {"tag": "staff"}}
    # What the API gives is what it takes: an editor can send back what it read.
    again = client.put(url, json=read["spec"])
    assert again.status_code == 200, again.text
    assert again.json()["spec"] == read["spec"]
    assert again.json()["version"] == 2

    off = client.delete(url)
    assert off.status_code == 200
    assert client.get(url).json()["active"] is False
    listed = client.get(f"/tenants/{tenant}/scenarios").json()
    assert [(row["key"], row["active"]) for row in listed] == [("cart", False)]
    # Saving it again is how it comes back on.
    on = client.put(url, json=client.get(url).json()["spec"])
    assert (on.json()["active"], on.json()["version"]) == (True, 4)


def problems(response: Any) -> list[tuple[list[str], str]]:
    assert response.status_code == 422, response.text
    return [(problem["loc"], problem["msg"]) for problem in response.json()["detail"]]


def test_problems_come_back_at_the_step_and_field_they_concern(
    client: TestClient, tenant: str
) -> None:
    url = f"/tenants/{tenant}/scenarios/cart"
    steps = cart()["steps"]
    no_timeout = [steps[0], {**steps[2], "timeout": None}]
    assert problems(client.put(url, json=cart(steps=no_timeout))) == [
        (["body", "steps", "1", "wait_for", "timeout"], "Input should be a valid timedelta")]

    lost = [*steps[:3], {**steps[3], "else": "nowhere"}, *steps[4:]]
    assert problems(client.put(url, json=cart(steps=lost))) == [
        (["body", "steps", "3", "branch", "else"], "step 'vip' jumps to unknown step 'nowhere'")]

    missing = [steps[0], {**steps[1], "template": "gone", "offer": {"key": "no-such"},
                          "variants": {"a": {"template": "gone-too"}}}, *steps[2:]]
    assert problems(client.put(url, json=cart(steps=missing))) == [
        (["body", "steps", "1", "send", "template"], "template 'gone' has no push version"),
        (["body", "steps", "1", "send", "offer", "key"], "offer 'no-such' does not exist"),
        (["body", "steps", "1", "send", "variants", "a", "template"],
         "template 'gone-too' has no push version"),
    ]
    assert problems(client.put(f"/tenants/{tenant}/scenarios/other", json=cart())) == [
        (["body", "key"], "the body's key must be 'other', as in the path")]
    assert client.get(url).status_code == 404  # nothing refused was saved


@pytest.mark.parametrize(("url", "rule"), [
    ("https://169.254.169.254/latest/meta-data/", "address"),
    ("https://0x7f.1/hook", "address"),
    ("https://2130706433/hook", "address"),
    ("https://[::ffff:10.0.0.1]/hook", "address"),
    ("https://localhost/hook", "local_name"),
    ("http://shop.example/hook", "scheme"),
])
def test_a_webhook_to_an_inside_target_is_refused_at_its_step(
    client: TestClient, tenant: str, url: str, rule: str
) -> None:
    before = REGISTRY.get_sample_value("vitrina_outbound_refusals_total", {
        "client": "webhook", "stage": "save", "rule": rule}) or 0.0
    steps = [*cart()["steps"], {"id": "tell", "type": "webhook", "url": url}]
    refused = client.put(f"/tenants/{tenant}/scenarios/cart", json=cart(steps=steps))
    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["detail"]
    assert problem["loc"] == ["body", "steps", "6", "webhook", "url"]
    assert problem["msg"].startswith(f"refused ({rule}): ")
    assert client.get(f"/tenants/{tenant}/scenarios").json() == []
    assert REGISTRY.get_sample_value("vitrina_outbound_refusals_total", {
        "client": "webhook", "stage": "save", "rule": rule}) == before + 1
    steps[-1]["url"] = "https://shop.example/hooks/vitrina"
    assert client.put(f"/tenants/{tenant}/scenarios/cart", json=cart(steps=steps)
                      ).status_code == 200


def test_a_misspelt_name_comes_back_with_the_nearest_valid_one(
    client: TestClient, tenant: str
) -> None:
    url = f"/tenants/{tenant}/scenarios/cart"
    steps = cart()["steps"]
    typed = [
        (cart(entry={"event": "cart.abandon"}), ["body", "entry", "event"],
         "(did you mean 'cart.abandoned'?)"),
        (cart(exit_on=["order.creatd"]), ["body", "exit_on", "0"],
         "(did you mean 'order.created'?)"),
        (cart(steps=[{**steps[0], "type": "wiat"}]), ["body", "steps", "0"],
         "(did you mean 'wait'?)"),
        (cart(steps=[{"id": "pause", "type": "wait", "fro": "PT1M"}]),
         ["body", "steps", "0", "wait", "fro"], "(did you mean 'for'?)"),
        (cart(conditions={"tga": "staff"}), ["body", "conditions"], "(did you mean 'tag'?)"),
        (cart(conditions={"not": {"purchased": {"categroy": "dryers"}}}),
         ["body", "conditions", "not", "not", "purchased", "purchased", "categroy"],
         "(did you mean 'category'?)"),
        (cart(steps=[{**steps[1], "channels": ["psh"]}]),
         ["body", "steps", "0", "send", "channels", "0"], "(did you mean 'push'?)"),
        (cart(entry={"event": "presence.enter", "where": [{"attribute": "stor", "value": "s1"}]}),
         ["body", "entry", "where", "0", "attribute"], "(did you mean 'store'?)"),
        (cart(steps=[{**steps[1], "template": "crt", "offer": {"key": "dryers-2"}}]),
         ["body", "steps", "0", "send", "template"], "(did you mean 'cart'?)"),
    ]
    for document, where, hint in typed:
        found = dict((tuple(loc), message) for loc, message in problems(client.put(url,
                                                                                   json=document)))
        assert hint in found.get(tuple(where), ""), (where, found)
    offer = problems(client.put(url, json=typed[-1][0]))[-1]
    assert offer[1].endswith("(did you mean 'dryers-20'?)"), offer


def test_a_template_using_what_its_send_cannot_fill_is_refused_at_the_step(
    client: TestClient, tenant: str
) -> None:
    coupon_text = {"parts": {"title": "{{ store.name }}", "body": "Code {{ coupon.code }}"}}
    saved = client.put(f"/tenants/{tenant}/templates/note/push/en-GB", json=coupon_text)
    assert saved.status_code == 200, saved.text
    send = {"id": "note", "type": "send", "channels": ["push"], "template": "cart",
            "variants": {"b": {"template": "note"}}}
    found = problems(client.put(f"/tenants/{tenant}/scenarios/cart", json=cart(
        steps=[send], variants=[{"key": "a"}, {"key": "b"}])))
    assert found == [
        (["body", "steps", "0", "send", "variants", "b", "template"],
         "template 'note' (push, en-GB) uses coupon.code, which step 'note' cannot fill: "
         "give the step a coupon"),
        (["body", "steps", "0", "send", "variants", "b", "template"],
         "template 'note' (push, en-GB) uses store.name, which step 'note' cannot fill: "
         "only journeys started by a store visit or a geofence have one"),
    ]
    # A visit with a coupon fills both.
    filled = cart(entry={"event": "presence.enter"}, variants=[{"key": "a"}, {"key": "b"}],
                  steps=[{**send, "offer": {"key": "dryers-20"}, "coupon": {"valid_for": "P1D"}}])
    assert client.put(f"/tenants/{tenant}/scenarios/cart", json=filled).status_code == 200
