"""The longest text a checked template part can render to, for any customer.

Length limits (SMS segments, push characters, web push bytes) must hold for every
context, not only the sample. Each piece of a part contributes its longest possible
rendering under a cost (characters, bytes, septets, UTF-16 units): literal text as it
is, a field at its maximum length in its worst characters, a filter at its widest output,
a condition at its costliest branch. The costs used are additive over concatenation, so
putting together each piece's worst gives the worst of the whole; the limit is then
measured exactly on that text.

Worst characters: free text may hold anything, so the worst is an emoji (2 UTF-16 units,
4 UTF-8 bytes) or, for a text that must stay GSM-7, the euro sign (2 septets). Codes,
links and percentages hold only characters of the GSM-7 basic table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from jinja2 import nodes

from cloud.templates.context import FIELDS, FieldKind, Leaf
from cloud.templates.filters import filter_outputs
from cloud.templates.formatting import Locale
from cloud.templates.sms import is_gsm7

Cost = Callable[[str], int]

#: The costliest character of free text in any encoding (outside the BMP, 4 UTF-8 bytes).
WORST_ANY = "\U0001f600"
#: The costliest character of free text that stays GSM-7 (extension table, 2 septets).
WORST_GSM7 = "€"
#: Codes, links and percentages: any one character costs the same.
WORST_PLAIN = "W"


def field_worst(leaf: Leaf, *, gsm7_only: bool) -> str:
    """A field's costliest value (money and moments are never printed raw)."""
    if leaf.kind is FieldKind.TEXT:
        return (WORST_GSM7 if gsm7_only else WORST_ANY) * leaf.max_chars
    if leaf.kind is FieldKind.PERCENT:
        return "100"
    return WORST_PLAIN * leaf.max_chars


class _Longest:
    def __init__(
        self, locale: Locale, *, plain_spaces: bool, cost: Cost, gsm7_only: bool
    ) -> None:
        self.locale = locale
        self.plain_spaces = plain_spaces
        self.cost = cost
        self.gsm7_only = gsm7_only

    def best(self, candidates: Iterable[str | None]) -> str | None:
        possible = [
            text
            for text in candidates
            if text is not None and (not self.gsm7_only or is_gsm7(text))
        ]
        return max(possible, key=self.cost, default=None)

    def body(self, statements: Sequence[nodes.Node]) -> str | None:
        pieces: list[str] = []
        for node in statements:
            piece = self.statement(node)
            if piece is None:
                return None
            pieces.append(piece)
        return "".join(pieces)

    def statement(self, node: nodes.Node) -> str | None:
        if isinstance(node, nodes.Output):
            return self.body(node.nodes)
        if isinstance(node, nodes.If):
            branches = [self.body(node.body)]
            branches += [self.body(branch.body) for branch in node.elif_]
            branches.append(self.body(node.else_))
            return self.best(branches)
        return self.expression(node)

    def expression(self, node: nodes.Node) -> str | None:
        if isinstance(node, nodes.TemplateData):
            return self.best([node.data])
        if isinstance(node, nodes.Const):
            return self.best([str(node.value)])
        if isinstance(node, (nodes.Name, nodes.Getattr)):
            return self.best([field_worst(_leaf(node), gsm7_only=self.gsm7_only)])
        if isinstance(node, nodes.Filter):
            style = node.args[0] if node.args else (node.kwargs[0].value if node.kwargs else None)
            value = style.value if isinstance(style, nodes.Const) else None
            outputs = filter_outputs(
                node.name, value, self.locale, plain_spaces=self.plain_spaces
            )
            return self.best(outputs)
        if isinstance(node, nodes.Concat):
            return self.body(node.nodes)
        if isinstance(node, nodes.CondExpr):
            assert node.expr2 is not None
            return self.best([self.expression(node.expr1), self.expression(node.expr2)])
        if isinstance(node, (nodes.And, nodes.Or)):
            return self.best([self.expression(node.left), self.expression(node.right)])
        if isinstance(node, (nodes.Compare, nodes.Not)):
            return self.best(["False", "True"])
        raise ValueError(f"{type(node).__name__} cannot be measured; check the part first")


def _leaf(node: nodes.Node) -> Leaf:
    names: list[str] = []
    while isinstance(node, nodes.Getattr):
        names.append(node.attr)
        node = node.node
    assert isinstance(node, nodes.Name)
    return FIELDS[".".join([node.name, *reversed(names)])]


def longest(
    tree: nodes.Template,
    locale: Locale,
    *,
    cost: Cost,
    plain_spaces: bool = False,
    gsm7_only: bool = False,
) -> str | None:
    """The costliest rendering of a checked part; with `gsm7_only`, the costliest that
    stays in GSM-7, or None when none does."""
    walker = _Longest(locale, plain_spaces=plain_spaces, cost=cost, gsm7_only=gsm7_only)
    return walker.body(tree.body)
