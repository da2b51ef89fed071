"""Saving a template: every check that can be made without a customer, made once.

`compile_template` parses each part, applies the template policy and the field and type
checks (`analysis`), measures every part at its longest (`worst_case`) against the
channel's limits, makes sure an email always carries its unsubscribe link, and finally
renders the sample context once. What it returns, a `Template`, holds the compiled
parts and the fields they need: rendering it with a context that has those fields
cannot fail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import jinja2

from cloud.channels import ContentForm, TemplateMeasure
from cloud.templates.analysis import PartAnalysis, analyse
from cloud.templates.context import (
    FIELDS,
    FieldKind,
    PersonalisationContext,
    present_fields,
    sample_context,
    template_variables,
)
from cloud.templates.errors import TemplateError
from cloud.templates.formatting import Locale
from cloud.templates.sandbox import Flavour, compile_part, environment, render_part
from cloud.templates.sms import (
    SmsCount,
    SmsEncoding,
    count_sms,
    count_ucs2,
    gsm7_septets,
    ucs2_units,
)
from cloud.templates.spec import HTML_PARTS, URL_PARTS, TemplateLimits, TemplateSpec
from cloud.templates.worst_case import longest

#: RFC 8030 §7.2: push services accept 4096 bytes of encrypted body; aes128gcm spends 86
#: on its header, 1 on the padding delimiter and 16 on the tag (as cloud.delivery does).
WEB_PUSH_PLAINTEXT_BYTES = 4096 - 86 - 1 - 16
#: The sender adds a tag, an icon, an open-tracking URL and data to what the template
#: renders; a kilobyte is kept for them.
WEB_PUSH_SENDER_RESERVE = 1024
WEB_PUSH_TEMPLATE_BYTES = WEB_PUSH_PLAINTEXT_BYTES - WEB_PUSH_SENDER_RESERVE
#: The key under which the service worker reads each part (cloud.channels.web_push_service).
WEB_PUSH_KEYS: Mapping[str, str] = MappingProxyType(
    {"title": "title", "body": "body", "deep_link": "url", "image_url": "image"}
)
#: Parts that are a single line of text (a mail header, a notification title).
SINGLE_LINE_PARTS = frozenset({"subject", "title"})
#: Parts measured in characters at save time (and warned about in previews).
MEASURED_PARTS = frozenset({"title", "body", "subject"})
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")


@dataclass(frozen=True, slots=True)
class CompiledPart:
    name: str
    source: str
    flavour: Flavour
    fields: frozenset[str]
    template: jinja2.Template


@dataclass(frozen=True, slots=True)
class WorstCase:
    """Each measured part at its longest, for any context."""

    #: Characters of title, body and subject.
    chars: Mapping[str, int]
    sms: SmsCount | None = None
    web_push_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Template:
    """A saved template: checked, compiled, and measured at its longest."""

    spec: TemplateSpec
    limits: TemplateLimits
    parts: Mapping[str, CompiledPart]
    #: Every field some part uses: what a context must have to render this template.
    fields: frozenset[str]
    worst: WorstCase

    @property
    def channel(self) -> str:
        return self.spec.channel

    @property
    def locale(self) -> Locale:
        return self.spec.locale


def flavour_for(spec: TemplateSpec, part: str) -> Flavour:
    if part in HTML_PARTS:
        return Flavour.HTML
    return Flavour.SMS if TemplateMeasure.SMS_SEGMENTS in spec.measures else Flavour.TEXT


def compile_template(spec: TemplateSpec, limits: TemplateLimits | None = None) -> Template:
    """Check and compile a template; raises TemplateError saying what to fix."""
    limits = limits or TemplateLimits()
    analyses: dict[str, PartAnalysis] = {}
    parts: dict[str, CompiledPart] = {}
    for name, source in spec.parts.sources().items():
        flavour = flavour_for(spec, name)
        env = environment(spec.locale, flavour)
        analysis = analyse(
            name, source, env,
            url_part=name in URL_PARTS, single_line=name in SINGLE_LINE_PARTS,
        )
        analyses[name] = analysis
        template = compile_part(env, analysis.tree, name)
        parts[name] = CompiledPart(name, source, flavour, analysis.fields, template)
    worst = _measure(spec, analyses, limits)
    if spec.form is ContentForm.EMAIL:
        _check_unsubscribe(analyses)
    compiled = Template(
        spec=spec,
        limits=limits,
        parts=MappingProxyType(parts),
        fields=frozenset().union(*(part.fields for part in parts.values())),
        worst=worst,
    )
    # Whatever the checks above could not foresee shows up here, at save time.
    render_parts(compiled, sample_context(spec.locale))
    return compiled


def _longest_values(analysis: PartAnalysis) -> str:
    lengths = [
        f"{path} {FIELDS[path].max_chars}"
        for path in sorted(analysis.fields)
        if FIELDS[path].kind in (FieldKind.TEXT, FieldKind.CODE, FieldKind.URL)
    ]
    return f" (fields at their longest: {', '.join(lengths)} characters)" if lengths else ""


def _json_bytes(text: str) -> int:
    """Bytes the text adds inside a JSON string as the web push sender encodes it."""
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def _measure(
    spec: TemplateSpec, analyses: Mapping[str, PartAnalysis], limits: TemplateLimits
) -> WorstCase:
    locale = spec.locale
    chars = {
        name: len(longest(analysis.tree, locale, cost=len) or "")
        for name, analysis in analyses.items()
        if name in MEASURED_PARTS
    }
    measures = spec.measures
    if TemplateMeasure.NOTIFICATION_CHARS in measures:
        for name, limit in (("title", limits.push_title_chars), ("body", limits.push_body_chars)):
            if chars[name] > limit:
                raise TemplateError(
                    f"up to {chars[name]} characters at its longest, over the limit of {limit}"
                    + _longest_values(analyses[name]),
                    part=name,
                )
    if TemplateMeasure.WEB_PUSH_BYTES in measures:
        size = _web_push_bytes(analyses, locale)
        if size > WEB_PUSH_TEMPLATE_BYTES:
            raise TemplateError(
                f"the web push payload could reach {size} bytes; {WEB_PUSH_TEMPLATE_BYTES} "
                f"are available (a push message carries {WEB_PUSH_PLAINTEXT_BYTES} bytes "
                f"before encryption, {WEB_PUSH_SENDER_RESERVE} of them kept for the sender)",
                part="payload",
            )
        return WorstCase(MappingProxyType(chars), web_push_bytes=size)
    if TemplateMeasure.SMS_SEGMENTS in measures:
        sms = _sms_worst(analyses["text"], locale)
        if sms.segments > limits.sms_max_segments:
            raise TemplateError(
                f"up to {sms.segments} SMS segments at its longest ({sms.encoding}, "
                f"{sms.units} {sms.unit_name}), over the limit of {limits.sms_max_segments}"
                + _longest_values(analyses["text"]),
                part="text",
            )
        return WorstCase(MappingProxyType(chars), sms=sms)
    return WorstCase(MappingProxyType(chars))


def _web_push_bytes(analyses: Mapping[str, PartAnalysis], locale: Locale) -> int:
    document = {
        WEB_PUSH_KEYS[name]: longest(analysis.tree, locale, cost=_json_bytes) or ""
        for name, analysis in analyses.items()
    }
    return len(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode())


def _sms_worst(analysis: PartAnalysis, locale: Locale) -> SmsCount:
    """The most segments the text can take: its longest GSM-7 rendering, or its longest
    rendering counted as UCS-2 when some rendering needs UCS-2."""
    tree = analysis.tree
    counts: list[SmsCount] = []
    gsm = longest(tree, locale, cost=_septets, plain_spaces=True, gsm7_only=True)
    if gsm is not None:
        counts.append(count_sms(gsm))
    most_foreign = longest(tree, locale, cost=_non_gsm, plain_spaces=True) or ""
    if _non_gsm(most_foreign):
        counts.append(count_ucs2(longest(tree, locale, cost=ucs2_units, plain_spaces=True) or ""))
    # On a tie, UCS-2: the encoding with less room left in its last segment.
    return max(counts, key=lambda c: (c.segments, c.units, c.encoding is SmsEncoding.UCS2))


def _septets(text: str) -> int:
    return gsm7_septets(text) or 0


def _non_gsm(text: str) -> int:
    return 0 if gsm7_septets(text) is not None else 1


def _check_unsubscribe(analyses: Mapping[str, PartAnalysis]) -> None:
    for name in ("html", "text"):
        analysis = analyses[name]
        if analysis.unsubscribe_always:
            continue
        if "unsubscribe_url" in analysis.fields:
            reason = (
                "{{ unsubscribe_url }} must be printed outside every {% if %}: "
                "every email carries its unsubscribe link"
            )
        else:
            reason = "every email must carry its unsubscribe link: add {{ unsubscribe_url }}"
        raise TemplateError(reason, part=name, field="unsubscribe_url")


def check_link(part: str, text: str) -> None:
    """A rendered link part must be a usable URL: an image an http(s) URL, a deep link
    any scheme (apps register their own)."""
    if part == "image_url":
        parsed = urlsplit(text)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise TemplateError(f"must be an http or https URL, got {text[:80]!r}", part=part)
    elif not _SCHEME.fullmatch(text):
        raise TemplateError(f"must be a URL with a scheme, got {text[:80]!r}", part=part)


def render_parts(template: Template, context: PersonalisationContext) -> dict[str, str]:
    """Every part rendered for one context; TemplateError names a missing field."""
    missing = template.fields - present_fields(context)
    if missing:
        name, part = next(
            (name, part) for name, part in template.parts.items() if part.fields & missing
        )
        field = min(part.fields & missing)
        raise TemplateError(
            f"missing field {field!r}; the template needs {', '.join(sorted(missing))}",
            part=name,
            field=field,
        )
    variables: dict[str, Any] = template_variables(context)
    rendered = {
        name: render_part(part.template, variables, name)
        for name, part in template.parts.items()
    }
    for name in URL_PARTS & rendered.keys():
        check_link(name, rendered[name])
    return rendered
