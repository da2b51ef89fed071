"""Templates stored: compiled before they are saved, versioned, loaded compiled (once per
version) in the best locale for the customer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func
from sqlmodel import select

from cloud.db import session_scope
from cloud.templates import TemplateError, TemplateSpec
from cloud.templates.crud import (
    MessageTemplate,
    choose_locale,
    delete_template,
    get_template,
    list_templates,
    load_template,
    normalise_locale,
    save_template,
)

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def sms(text: str, locale: str = "es-ES") -> TemplateSpec:
    return TemplateSpec.model_validate(
        {"channel": "sms", "locale": locale, "parts": {"text": text}}
    )


def push(title: str, locale: str = "es-ES") -> TemplateSpec:
    return TemplateSpec.model_validate({"channel": "push", "locale": locale, "parts": {
        "title": title, "body": "{{ offer.discount_percent|percent }}"}})


def test_locale_choice() -> None:
    saved = ["es-ES", "en-GB", "en-US", "pt-BR"]
    assert normalise_locale(" pt_br ") == "pt-BR"
    assert normalise_locale("ES") == "es"
    assert choose_locale(saved, "en-US") == "en-US"
    assert choose_locale(saved, "en_us") == "en-US"
    assert choose_locale(saved, "en") == "en-GB"  # same language, first saved
    assert choose_locale(saved, "pt-PT") == "pt-BR"
    assert choose_locale(saved, "de-DE", default_locale="pt-BR") == "pt-BR"
    assert choose_locale(saved, "de-DE") == "es-ES"  # the first saved
    assert choose_locale(saved, None) == "es-ES"
    assert choose_locale([], "es-ES") is None


def test_templates_are_checked_saved_versioned_and_loaded_compiled(
    engine: Engine, tenant: str
) -> None:
    with session_scope(engine) as session:
        with pytest.raises(TemplateError, match=r"unknown field 'customer\.nickname'") as refused:
            save_template(session, tenant=tenant, key="cart", now=T0,
                          spec=sms("Hola {{ customer.nickname }}"))
        assert (refused.value.part, refused.value.field) == ("text", "customer.nickname")
        assert session.exec(select(func.count()).select_from(MessageTemplate)
                            .where(MessageTemplate.tenant == tenant)).one() == 0
        row, template = save_template(session, tenant=tenant, key="cart", now=T0,
                                      spec=sms("Hola {{ customer.first_name }}"))
        assert (row.version, row.locale, row.channel) == (1, "es-ES", "sms")
        assert template.fields == {"customer.first_name"}
        later = T0 + timedelta(hours=1)
        row, _ = save_template(session, tenant=tenant, key="cart", now=later,
                               spec=sms("Hola {{ customer.first_name }}: {{ link }}"))
        assert (row.version, row.created_at, row.updated_at) == (2, T0, later)
        save_template(session, tenant=tenant, key="cart", now=T0, spec=sms("Hi!", "en-GB"))
        save_template(session, tenant=tenant, key="cart", now=T0, spec=push("Hola"))
        save_template(session, tenant=tenant, key="welcome", now=T0, spec=push("Bienvenido"))
        session.commit()
    with session_scope(engine) as session:
        assert [(r.key, r.channel, r.locale) for r in list_templates(session, tenant=tenant)] == [
            ("cart", "push", "es-ES"), ("cart", "sms", "en-GB"), ("cart", "sms", "es-ES"),
            ("welcome", "push", "es-ES")]
        assert len(list_templates(session, tenant=tenant, key="welcome")) == 1
        assert list_templates(session, tenant="other") == []
        found = get_template(session, tenant=tenant, key="cart", channel="sms",
                             locale="es-ES")
        assert found is not None
        assert found.spec["parts"] == {"text": "Hola {{ customer.first_name }}: {{ link }}"}
        assert delete_template(session, tenant=tenant, key="welcome", channel="push",
                               locale="es-ES") is not None
        assert delete_template(session, tenant=tenant, key="welcome", channel="push",
                               locale="es-ES") is None
        # deleted and saved again: a new row, now saved after the en-GB one
        assert delete_template(session, tenant=tenant, key="cart", channel="sms",
                               locale="es-ES") is not None
        save_template(session, tenant=tenant, key="cart", now=T0, spec=sms("Hola", "es-ES"))
        session.commit()
    # loading: the best locale for the customer, compiled once per version

    def load(locale: str | None, channel: str = "sms", **options: str) -> str | None:
        with session_scope(engine) as session:
            template = load_template(session, tenant=tenant, key="cart", channel=channel,
                                     locale=locale, **options)
        return None if template is None else template.spec.parts.sources()["text"]

    assert load("es-ES") == "Hola"
    assert load("en") == "Hi!"
    assert load("en_US") == "Hi!"
    assert load("fr-FR") == "Hi!"  # the first saved of those there are
    assert load("fr-FR", default_locale="es_es") == "Hola"
    assert load(None) == "Hi!"
    assert load("es-ES", "email") is None
    with session_scope(engine) as session:
        first = load_template(session, tenant=tenant, key="cart", channel="sms",
                              locale="es-ES")
        again = load_template(session, tenant=tenant, key="cart", channel="sms",
                              locale="es")
        assert first is not None
        assert again is first  # compiled once for this version
        save_template(session, tenant=tenant, key="cart", now=T0, spec=sms("¡Hola!"))
        session.commit()
        edited = load_template(session, tenant=tenant, key="cart", channel="sms",
                               locale="es-ES")
        assert edited is not None
        assert edited is not first
        assert edited.spec.parts.sources()["text"] == "¡Hola!"
        # deleted and saved again: version 1 again, but not the old version 1's template
        delete_template(session, tenant=tenant, key="cart", channel="sms", locale="es-ES")
        save_template(session, tenant=tenant, key="cart", now=T0, spec=sms("Hola"))
        session.commit()
        resaved = load_template(session, tenant=tenant, key="cart", channel="sms",
                                locale="es-ES")
        assert resaved is not None
        assert resaved is not first
        assert resaved.spec.parts.sources()["text"] == "Hola"
