"""The Jinja2 environments templates are parsed and rendered in.

A `SandboxedEnvironment` refuses access to underscore attributes and Python internals
and calls of anything unsafe; on top of that these environments have no globals (no
`range`, `cycler`, `joiner`, `namespace`, `lipsum`), no tests, and only the four
formatting filters. Undefined names raise (`StrictUndefined`) instead of printing
nothing. HTML parts autoescape, text parts do not (a name like `<Ana>` must reach an
SMS as typed). The save-time checks in `analysis` refuse far more than the sandbox does;
the sandbox is what still stands if a check were ever missed.

One environment per locale and flavour, built on first use and shared: Jinja
environments are safe to render from many threads once configured.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import jinja2
from jinja2 import StrictUndefined, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from cloud.templates.errors import TemplateError
from cloud.templates.filters import jinja_filters
from cloud.templates.formatting import Locale


class Flavour(StrEnum):
    #: Autoescaped.
    HTML = "html"
    TEXT = "text"
    #: Text whose formatted numbers use plain spaces (GSM-7 has no no-break space).
    SMS = "sms"


@functools.cache
def environment(locale: Locale, flavour: Flavour) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        autoescape=flavour is Flavour.HTML,
        undefined=StrictUndefined,
        # Block tags on lines of their own leave no blank lines behind in text parts.
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=0,
    )
    env.globals.clear()
    env.tests.clear()
    env.filters.clear()
    env.filters.update(jinja_filters(locale, plain_spaces=flavour is Flavour.SMS))
    return env


def parse(env: SandboxedEnvironment, source: str, part: str) -> nodes.Template:
    """The template's syntax tree; any parse failure becomes a TemplateError with a line."""
    try:
        return env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", part=part, line=exc.lineno) from exc
    except RecursionError as exc:
        raise TemplateError("expressions are nested too deeply", part=part) from exc
    except (ValueError, OverflowError) as exc:  # e.g. an integer literal of 5,000 digits
        raise TemplateError(f"cannot be parsed: {exc}", part=part) from exc


def compile_part(
    env: SandboxedEnvironment, source: str | nodes.Template, part: str
) -> jinja2.Template:
    """Compile a part from its source or from the tree `parse` gave (not parsed again)."""
    try:
        code = env.compile(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", part=part, line=exc.lineno) from exc
    except (RecursionError, SyntaxError) as exc:  # Python's own nesting limits, as a guard
        raise TemplateError("expressions are nested too deeply", part=part) from exc
    except (ValueError, OverflowError) as exc:
        raise TemplateError(f"cannot be compiled: {exc}", part=part) from exc
    return env.template_class.from_code(env, code, env.make_globals(None), None)


def render_part(template: jinja2.Template, variables: Mapping[str, Any], part: str) -> str:
    """Render one part; whatever goes wrong comes out as a TemplateError naming the part."""
    try:
        return template.render(variables)
    except SecurityError as exc:
        raise TemplateError(f"refused by the sandbox: {exc}", part=part) from exc
    except UndefinedError as exc:
        raise TemplateError(f"missing field: {exc.message}", part=part) from exc
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(f"cannot be rendered: {exc}", part=part) from exc
