"""Message templates in the database: saved only once they compile, loaded compiled.

A template is saved per (tenant, key, channel, locale). `save_template` runs
`compile_template` first, so every stored spec compiled when it was saved: unknown
fields, syntax errors, missing unsubscribe links and too-long SMS are refused at save
time (TemplateError), never discovered at send time. Each save bumps the row's `version`.

`load_template` is what a send uses: the best locale for the customer (see
`choose_locale`), compiled once per process and version (`_CompiledCache`), so a busy
scenario does not parse Jinja2 per message and an edit takes effect at the next send.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import StringConstraints
from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, Session, SQLModel, col, select

from cloud.db import UtcDateTime, dialect_insert
from cloud.templates.compiler import Template, compile_template
from cloud.templates.formatting import Locale
from cloud.templates.spec import TemplateLimits, TemplateSpec

#: The scenario definitions' key rule (cloud.scenarios.spec.Key): what a send step names.
TEMPLATE_KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
TemplateKey = Annotated[str, StringConstraints(pattern=TEMPLATE_KEY_PATTERN)]
#: Compiled templates kept per process: a tenant has tens of templates in a few locales;
#: past this the least recently used are compiled again when next needed.
COMPILED_CACHE_SIZE = 1024
_LOCALE_SPLIT = re.compile(r"[-_]")


class MessageTemplate(SQLModel, table=True):
    __tablename__ = "message_template"
    __table_args__ = (
        UniqueConstraint("tenant", "key", "channel", "locale", name="uq_message_template"),
        # Ids identify a template's content in the compiled cache with its version: one
        # deleted and saved again must not get the old id back.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    key: str = Field(max_length=64)
    channel: str = Field(max_length=16)
    locale: str = Field(max_length=16)
    #: The TemplateSpec as saved (channel, locale, parts), as JSON.
    spec: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    version: int
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


_TABLE = SQLModel.metadata.tables[MessageTemplate.__tablename__]


def template_spec(row: MessageTemplate) -> TemplateSpec:
    """The row's spec (it validated when saved, so this does not fail for stored rows)."""
    return TemplateSpec.model_validate(row.spec)


#: (tenant, key, channel, locale, row id, version): a row never changes without its
#: version changing, and a template deleted and saved again gets a new row id.
CacheKey = tuple[str, str, str, str, int, int]


class _CompiledCache:
    """Compiled templates by CacheKey, least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[CacheKey, Template] = OrderedDict()

    def get(self, key: CacheKey) -> Template | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: CacheKey, template: Template) -> None:
        with self._lock:
            self._entries[key] = template
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


_COMPILED = _CompiledCache(COMPILED_CACHE_SIZE)


def _cache_key(row: MessageTemplate) -> CacheKey:
    assert row.id is not None
    return (row.tenant, row.key, row.channel, row.locale, row.id, row.version)


def compiled(row: MessageTemplate) -> Template:
    """The row's template, compiled (once per process and version)."""
    key = _cache_key(row)
    template = _COMPILED.get(key)
    if template is None:
        template = compile_template(template_spec(row), TemplateLimits())
        _COMPILED.put(key, template)
    return template


def save_template(
    session: Session, *, tenant: str, key: str, spec: TemplateSpec, now: datetime,
    limits: TemplateLimits | None = None,
) -> tuple[MessageTemplate, Template]:
    """Compile `spec` (TemplateError saying what to fix) and store it under (tenant, key,
    spec.channel, spec.locale), creating it at version 1 or bumping its version. Two
    admins saving at once both succeed, one after the other (an atomic upsert)."""
    template = compile_template(spec, limits or TemplateLimits())
    stored = spec.model_dump(mode="json", exclude_none=True)
    insert = dialect_insert(session, _TABLE).values(
        tenant=tenant, key=key, channel=spec.channel, locale=spec.locale.value,
        spec=stored, version=1, created_at=now, updated_at=now,
    )
    statement = insert.on_conflict_do_update(
        index_elements=["tenant", "key", "channel", "locale"],
        set_={"spec": stored, "version": _TABLE.c.version + 1, "updated_at": now},
    ).returning(_TABLE.c.id)
    row_id = int(session.connection().execute(statement).scalar_one())
    row = session.get(MessageTemplate, row_id, populate_existing=True)
    assert row is not None
    if limits is None:
        _COMPILED.put(_cache_key(row), template)
    return row, template


def get_template(
    session: Session, *, tenant: str, key: str, channel: str, locale: str
) -> MessageTemplate | None:
    """The row saved for exactly this locale (no fallback: see `load_template`)."""
    return session.exec(select(MessageTemplate).where(
        MessageTemplate.tenant == tenant, MessageTemplate.key == key,
        MessageTemplate.channel == channel, MessageTemplate.locale == locale,
    )).first()


def list_templates(
    session: Session, *, tenant: str, key: str | None = None
) -> Sequence[MessageTemplate]:
    query = select(MessageTemplate).where(MessageTemplate.tenant == tenant)
    if key is not None:
        query = query.where(MessageTemplate.key == key)
    return session.exec(query.order_by(
        col(MessageTemplate.key), col(MessageTemplate.channel), col(MessageTemplate.locale)
    )).all()


def delete_template(
    session: Session, *, tenant: str, key: str, channel: str, locale: str
) -> MessageTemplate | None:
    row = get_template(session, tenant=tenant, key=key, channel=channel, locale=locale)
    if row is not None:
        session.delete(row)
        session.flush()
    return row


def normalise_locale(locale: str) -> str:
    """"es_es", "ES-es" -> "es-ES": language lower case, region upper case."""
    language, _, rest = _LOCALE_SPLIT.sub("-", locale.strip()).partition("-")
    return f"{language.lower()}-{rest.upper()}" if rest else language.lower()


def choose_locale(available: Sequence[str], wanted: str | None,
                  default_locale: str | None = None) -> str | None:
    """The locale to send in, from those saved (`available`, in the order they were first
    saved): the customer's own (`wanted`, normalised); else one of the same language
    ("es" or "es-MX" finds "es-ES"); else the tenant's `default_locale`; else the first
    saved, which is the shop's own language in practice. None when nothing is saved."""
    if not available:
        return None
    for candidate in (wanted, default_locale):
        if not candidate:
            continue
        normal = normalise_locale(candidate)
        if normal in available:
            return normal
        language = normal.split("-", 1)[0]
        same_language = [
            locale for locale in available if locale.split("-", 1)[0].lower() == language
        ]
        if same_language:
            return same_language[0]
    return available[0]


def load_template(
    session: Session, *, tenant: str, key: str, channel: str, locale: str | None,
    default_locale: str | None = None,
) -> Template | None:
    """The compiled template `key` for `channel` in the best locale for `locale` (see
    `choose_locale`), or None when the tenant has none for that key and channel.

    Compiled once per process and version. Raises TemplateError only if a stored
    template no longer compiles (the checks tightened since it was saved)."""
    saved = session.exec(
        select(MessageTemplate.locale, MessageTemplate.id, MessageTemplate.version).where(
            MessageTemplate.tenant == tenant, MessageTemplate.key == key,
            MessageTemplate.channel == channel,
        ).order_by(col(MessageTemplate.id))
    ).all()
    versions = {found_locale: (int(row_id or 0), version)
                for found_locale, row_id, version in saved}
    chosen = choose_locale(list(versions), locale, default_locale)
    if chosen is None:
        return None
    row_id, version = versions[chosen]
    cached = _COMPILED.get((tenant, key, channel, chosen, row_id, version))
    if cached is not None:
        return cached  # the spec (up to 200 kB of HTML) is not even read
    row = get_template(session, tenant=tenant, key=key, channel=channel, locale=chosen)
    return None if row is None else compiled(row)


def supported_locale(locale: str) -> Locale | None:
    """The templates' Locale for `locale` if it is one (normalised), else None."""
    try:
        return Locale(normalise_locale(locale))
    except ValueError:
        return None
