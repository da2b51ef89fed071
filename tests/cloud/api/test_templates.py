"""Templates over HTTP: saved only when they compile (422 naming part, line and field),
read, listed, deleted, and previewed with the sample context or the admin's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.auth.models import Role
from tests.cloud.factories import bearer, cloud_settings, issue_key

NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
UNSUBSCRIBE_HTML = '<p><a href="{{ unsubscribe_url }}">Darse de baja</a></p>'
SMS = {"parts": {"text": "Hola {{ customer.first_name }}, {{ offer.discount_percent|percent }}"
                         " en {{ product.name }}: {{ link }}"}}


@pytest.fixture
def client(engine: Engine, migrated_url: str, tenant: str) -> Iterator[TestClient]:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url)
    app = create_app(settings, engine=engine, now=lambda: NOW)
    with TestClient(app, headers=bearer(issue_key(engine, tenant=tenant))) as test_client:
        yield test_client


def test_templates_are_checked_when_saved_and_previewed(
    client: TestClient, tenant: str, engine: Engine
) -> None:
    url = f"/tenants/{tenant}/templates/cart/sms/es-ES"
    saved = client.put(url, json=SMS)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["key"], body["channel"], body["locale"], body["version"]) == (
        "cart", "sms", "es-ES", 1)
    assert body["fields"] == ["customer.first_name", "link", "offer.discount_percent",
                              "product.name"]
    assert body["parts"] == SMS["parts"]
    assert client.put(url, json=SMS).json()["version"] == 2
    unknown = client.put(url, json={"parts": {"text": "Hola\n{{ customer.nick }}"}})
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == {
        "message": "text: line 2: unknown field 'customer.nick'; customer has"
                   " customer.first_name, customer.last_name",
        "part": "text", "line": 2, "field": "customer.nick"}
    no_unsubscribe = client.put(f"/tenants/{tenant}/templates/news/email/es-ES", json={
        "parts": {"subject": "Hola", "html": "<p>Hola</p>", "text": "Hola"}})
    assert no_unsubscribe.status_code == 422
    assert no_unsubscribe.json()["detail"]["field"] == "unsubscribe_url"
    wrong_parts = client.put(f"/tenants/{tenant}/templates/cart/push/es-ES", json=SMS)
    assert wrong_parts.status_code == 422
    assert "parts" in wrong_parts.json()["detail"]
    assert "Hola" not in wrong_parts.text  # the submitted text is not echoed
    for bad_url in (f"/tenants/{tenant}/templates/cart/fax/es-ES",
                    f"/tenants/{tenant}/templates/cart/sms/xx-XX",
                    f"/tenants/{tenant}/templates/Cart Key/sms/es-ES"):
        assert client.put(bad_url, json=SMS).status_code == 422
    assert client.put(url, json={**SMS, "channel": "sms"}).status_code == 422
    assert client.get(url).json()["version"] == 2
    assert client.put(f"/tenants/{tenant}/templates/cart/push/es-ES", json={"parts": {
        "title": "{{ customer.first_name }}", "body": "Vuelve"}}).status_code == 200
    listed = client.get(f"/tenants/{tenant}/templates", params={"key": "cart"}).json()
    assert [(t["channel"], t["locale"]) for t in listed] == [("push", "es-ES"), ("sms", "es-ES")]
    assert client.delete(url).status_code == 200
    assert client.get(url).status_code == 404
    assert client.delete(url).status_code == 404
    app_key = bearer(issue_key(engine, tenant=tenant, role=Role.APP))
    assert client.put(url, json=SMS, headers=app_key).status_code == 403

    # previews: of a template given in the request, or of a saved one
    preview = f"/tenants/{tenant}/templates/preview"
    given = client.post(preview, json={
        "spec": {"channel": "sms", "locale": "es-ES", **SMS},
        "context": {"customer": {"first_name": "Ana"}},
    })
    assert given.status_code == 200, given.text
    body = given.json()
    assert body["message"]["text"] == (
        "Hola Ana, 20 % en Secadora EcoDry 8 kg: https://vtr.example.com/c/9fK2mQ")
    assert (body["message"]["segments"], body["message"]["encoding"]) == (1, "GSM-7")
    assert body["warnings"][0].startswith("text: 1 SMS segment here")
    assert (body["key"], body["version"]) == (None, None)
    assert client.post(preview, json={"key": "cart", "channel": "sms", "locale": "es"}
                       ).status_code == 404
    client.put(f"/tenants/{tenant}/templates/cart/sms/es-ES", json=SMS)
    client.put(f"/tenants/{tenant}/templates/cart/sms/en-GB", json={"parts": {
        "text": "Hi {{ customer.first_name }}: {{ link }}"}})
    saved = client.post(preview, json={"key": "cart", "channel": "sms", "locale": "en_US"})
    assert saved.status_code == 200, saved.text
    assert (saved.json()["locale"], saved.json()["key"], saved.json()["version"]) == (
        "en-GB", "cart", 1)
    assert saved.json()["message"]["text"] == "Hi Juan: https://vtr.example.com/c/9fK2mQ"
    missing = client.post(preview, json={"key": "cart", "channel": "sms", "locale": "es-ES",
                                         "context": {"product": None}})
    assert missing.status_code == 422
    assert missing.json()["detail"]["field"] == "product.name"
    invalid = client.post(preview, json={"key": "cart", "channel": "sms",
                                         "context": {"customer": {"first_name": "A\nB"}}})
    assert invalid.status_code == 422
    assert "customer.first_name" in invalid.json()["detail"]
    assert "A\nB" not in invalid.text
    for ambiguous in ({}, {"spec": {"channel": "sms", "locale": "es-ES", **SMS}, "key": "cart"},
                      {"key": "cart"}):
        assert client.post(preview, json=ambiguous).status_code == 422
