"""Message templates: personalised fields, checked when saved, previewed, rendered.

    spec = TemplateSpec.model_validate(admin_json)       # pydantic ValidationError
    template = compile_template(spec, TemplateLimits())  # TemplateError: what to fix
    preview(template, {"customer": {"first_name": "Ana"}})
    render(template, PersonalisationContext(...))         # at send time

A template is Jinja2 source per channel part, rendered in a sandbox with a small fixed
language (see `analysis`), against the typed `PersonalisationContext`. Everything that
can go wrong without a customer is refused at save time: unknown fields, syntax errors,
constructs outside the policy, an email without its unsubscribe link, an SMS or a push
too long at its longest. Nothing here touches a database or the network.
"""

from cloud.templates.compiler import Template, compile_template
from cloud.templates.context import (
    FIELDS,
    Coupon,
    Customer,
    Loyalty,
    Money,
    Offer,
    PersonalisationContext,
    Product,
    Store,
    sample_context,
)
from cloud.templates.errors import TemplateError
from cloud.templates.formatting import Currency, Locale
from cloud.templates.rendering import (
    Preview,
    Rendered,
    RenderedEmail,
    RenderedPush,
    RenderedText,
    preview,
    render,
)
from cloud.templates.sms import SmsCount, SmsEncoding, count_sms
from cloud.templates.spec import TemplateLimits, TemplateSpec

__all__ = [
    "FIELDS",
    "Coupon",
    "Currency",
    "Customer",
    "Locale",
    "Loyalty",
    "Money",
    "Offer",
    "PersonalisationContext",
    "Preview",
    "Product",
    "Rendered",
    "RenderedEmail",
    "RenderedPush",
    "RenderedText",
    "SmsCount",
    "SmsEncoding",
    "Store",
    "Template",
    "TemplateError",
    "TemplateLimits",
    "TemplateSpec",
    "compile_template",
    "count_sms",
    "preview",
    "render",
    "sample_context",
]
