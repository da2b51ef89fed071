"""The sandbox is the second line: these templates bypass the save-time checks (which
refuse all of them) to show what still stands if a check were ever missed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import jinja2
import pytest
from jinja2.exceptions import SecurityError

from cloud.templates.context import Money
from cloud.templates.errors import TemplateError
from cloud.templates.formatting import Currency, Locale
from cloud.templates.sandbox import Flavour, compile_part, environment, parse, render_part


def _render(source: str, flavour: Flavour = Flavour.TEXT, **variables: object) -> str:
    env = environment(Locale.EN_GB, flavour)
    return render_part(compile_part(env, source, "body"), variables, "body")


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__ }}",
        "{{ x.__init__.__globals__ }}",
        "{{ '{0.__class__}'.format(x) }}",
        "{{ (x.__class__) }}",
    ],
)
def test_python_internals_raise_security_error_as_template_error(source: str) -> None:
    with pytest.raises(TemplateError, match="body: refused by the sandbox") as caught:
        _render(source, x="text")
    assert isinstance(caught.value.__cause__, SecurityError)


@pytest.mark.parametrize("name", ["range", "cycler", "joiner", "namespace", "lipsum", "dict"])
def test_no_globals(name: str) -> None:
    with pytest.raises(TemplateError, match=f"body: missing field: '{name}' is undefined"):
        _render("{{ " + name + " }}")


def test_only_the_four_filters_and_no_tests() -> None:
    env = environment(Locale.EN_GB, Flavour.TEXT)
    assert set(env.filters) == {"money", "percent", "date", "datetime"}
    assert env.tests == {}
    assert env.globals == {}


def test_undefined_raises_instead_of_printing_nothing() -> None:
    with pytest.raises(TemplateError, match="missing field: 'customer' is undefined"):
        _render("Hi {{ customer.first_name }}")


def test_wrong_values_come_out_as_template_errors() -> None:
    with pytest.raises(TemplateError, match="body: cannot be rendered: money needs an amount"):
        _render("{{ x | money }}", x=3)


def test_html_flavour_escapes_and_text_flavours_do_not() -> None:
    name = "<script>alert('x')</script> & co"
    assert _render("<p>{{ n }}</p>", Flavour.HTML, n=name) == (
        "<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co</p>"
    )
    assert _render("Hi {{ n }}", Flavour.TEXT, n=name) == f"Hi {name}"
    assert _render("Hi {{ n }}", Flavour.SMS, n=name) == f"Hi {name}"


def test_sms_flavour_formats_with_plain_spaces() -> None:
    price = Money(amount=Decimal("1234.5"), currency=Currency.EUR)
    env = environment(Locale.FR_FR, Flavour.SMS)
    assert render_part(compile_part(env, "{{ p|money }}", "text"), {"p": price}, "text") == (
        "1 234,50 €"
    )
    env = environment(Locale.FR_FR, Flavour.TEXT)
    assert render_part(compile_part(env, "{{ p|money }}", "text"), {"p": price}, "text") == (
        "1\u202f234,50\u00a0€"
    )


def test_block_lines_leave_no_blank_lines() -> None:
    source = "Hello\n  {% if x %}\n  yes\n  {% endif %}\nbye"
    assert _render(source, x=True) == "Hello\n  yes\nbye"
    assert _render(source, x=False) == "Hello\nbye"


def test_dates_render_in_the_moment_own_zone() -> None:
    moment = datetime(2025, 6, 2, 21, 59, tzinfo=UTC)
    assert _render("{{ m|datetime('short') }}", m=moment) == "02/06/2025, 21:59"


def test_environments_are_shared() -> None:
    assert environment(Locale.EN_GB, Flavour.HTML) is environment(Locale.EN_GB, Flavour.HTML)
    assert environment(Locale.EN_GB, Flavour.HTML) is not environment(Locale.EN_GB, Flavour.TEXT)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ a.b }", "body: line 1: unexpected '}'"),
        ("ok\n{% if %}", "body: line 2: Expected an expression, got 'end of statement block'"),
        ("{% endif %}", "body: line 1: Encountered unknown tag 'endif'."),
        ("{{ " + "9" * 5000 + " }}", "body: cannot be parsed: Exceeds the limit"),
        ("{{ " + "(" * 400 + "1" + ")" * 400 + " }}", "body: expressions are nested too deeply"),
    ],
)
def test_parse_errors_become_template_errors(source: str, message: str) -> None:
    env = environment(Locale.EN_GB, Flavour.TEXT)
    with pytest.raises(TemplateError) as caught:
        parse(env, source, "body")
    assert str(caught.value).startswith(message)
    with pytest.raises(TemplateError):
        compile_part(env, source, "body")


def test_compiled_parts_are_jinja_templates() -> None:
    env = environment(Locale.EN_GB, Flavour.TEXT)
    assert isinstance(compile_part(env, "x", "body"), jinja2.Template)
