"""Save-time checks of one template part: what it may contain and which fields it uses.

Templates are a small language on purpose. Allowed: text, `{{ expression }}`, and
`{% if %}/{% elif %}/{% else %}`; expressions are personalisation fields
(`customer.first_name`), string and number constants, the four formatting filters with
constant arguments, `~` to join, `a if b else c`, comparisons, `and`/`or`/`not`.
Everything else — loading other templates, macros, loops, assignments, calls, subscripts,
arithmetic, tests, `{% autoescape %}`, underscore names — is refused with the line it is
on. A template that passes cannot reach Python internals, cannot loop or compute its way
into a slow render, and cannot fail at send time on anything but a missing field.

Types are checked too: `|money` takes only money fields, dates only moments, and money
and moments are never printed raw (they would come out as `Money(amount=...)` or an ISO
timestamp). Link parts may print only links, codes and percentages, never free text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from cloud.suggest import did_you_mean, nearest
from cloud.templates.context import FIELDS, ROOTS, SECTIONS, FieldKind, Leaf
from cloud.templates.errors import TemplateError
from cloud.templates.filters import FILTERS
from cloud.templates.sandbox import parse

#: Node types a template may contain (and that need no more than the checks below).
ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.If, nodes.CondExpr,
    nodes.Name, nodes.Getattr, nodes.Const, nodes.Filter, nodes.Keyword, nodes.Concat,
    nodes.Compare, nodes.Operand, nodes.And, nodes.Or, nodes.Not,
)
_LOADS = "a template cannot load another"
_AUTOESCAPE = "{% autoescape %} is not allowed: each part's escaping is fixed"
#: Why each refused construct is refused, checked in this order (subclasses first).
REFUSED_NODES: tuple[tuple[type[nodes.Node], str], ...] = (
    (nodes.Extends, "{% extends %} is not allowed: " + _LOADS),
    (nodes.Include, "{% include %} is not allowed: " + _LOADS),
    (nodes.Import, "{% import %} is not allowed: " + _LOADS),
    (nodes.FromImport, "{% from ... import %} is not allowed: " + _LOADS),
    (nodes.Block, "{% block %} is not allowed: templates do not inherit"),
    (nodes.Macro, "{% macro %} is not allowed"),
    (nodes.CallBlock, "{% call %} is not allowed"),
    (nodes.For, "{% for %} is not allowed: no personalisation field is a list"),
    (nodes.Assign, "{% set %} is not allowed: print the fields themselves"),
    (nodes.AssignBlock, "{% set %} is not allowed: print the fields themselves"),
    (nodes.With, "{% with %} is not allowed"),
    (nodes.FilterBlock, "{% filter %} blocks are not allowed: filter a field instead"),
    # Scope is what the parser wraps {% autoescape %} in; no other tag makes one here.
    (nodes.Scope, _AUTOESCAPE),
    (nodes.ScopedEvalContextModifier, _AUTOESCAPE),
    (nodes.EvalContextModifier, _AUTOESCAPE),
    (nodes.Call, "calls are not allowed"),
    (nodes.Getitem, "subscripts are not allowed: write customer.first_name"),
    (nodes.Test, "tests ('is ...') are not allowed"),
    (nodes.BinExpr, "arithmetic is not allowed"),
    (nodes.UnaryExpr, "arithmetic is not allowed"),
    (nodes.List, "lists are not allowed"),
    (nodes.Tuple, "tuples are not allowed"),
    (nodes.Dict, "dicts are not allowed"),
)
#: Marketing templates nest a few levels. Far deeper, the Python that Jinja generates
#: would reach the interpreter's own limits (100 indentation levels, 200 parentheses).
MAX_DEPTH = 40
#: Comparison operators and what they may compare.
_EQUALITY = frozenset({"eq", "ne"})
_ORDERING = frozenset({"lt", "lteq", "gt", "gteq"})
_MEMBERSHIP = frozenset({"in", "notin"})
#: Field kinds a link part may print: nothing with spaces or arbitrary characters.
URL_SAFE_KINDS = frozenset({FieldKind.URL, FieldKind.CODE, FieldKind.PERCENT})


class ValueType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    MONEY = "money"
    MOMENT = "moment"
    BOOL = "bool"
    NONE = "none"
    #: One of two different types (`a or b`, `a if c else b`).
    MIXED = "mixed"


_FIELD_TYPES = {
    FieldKind.TEXT: ValueType.TEXT,
    FieldKind.CODE: ValueType.TEXT,
    FieldKind.URL: ValueType.TEXT,
    FieldKind.PERCENT: ValueType.NUMBER,
    FieldKind.MONEY: ValueType.MONEY,
    FieldKind.DATETIME: ValueType.MOMENT,
}
_RAW_HINTS = {
    FieldKind.MONEY: "is an amount: print it with |money",
    FieldKind.DATETIME: "is a moment: print it with |date or |datetime",
}


@dataclass(frozen=True, slots=True)
class PartAnalysis:
    part: str
    tree: nodes.Template
    #: Every field the part uses, printed or tested.
    fields: frozenset[str]
    #: Whether `{{ unsubscribe_url }}` is printed outside every condition.
    unsubscribe_always: bool


def analyse(
    part: str,
    source: str,
    env: SandboxedEnvironment,
    *,
    url_part: bool = False,
    single_line: bool = False,
) -> PartAnalysis:
    """Parse and check one part; raises TemplateError naming the part, line and field."""
    tree = parse(env, source, part)
    _check_depth(tree, part)
    try:
        _check_constructs(tree, part)
        _check_roots(tree, part)
        fields = _Typer(part, url_part=url_part).template(tree)
    except RecursionError as exc:
        raise TemplateError("expressions are nested too deeply", part=part) from exc
    if single_line:
        _check_no_literal(tree, part, "\r\n", f"the {part} must be one line")
    if url_part:
        _check_no_literal(tree, part, " \t\r\n\f\v", "a link cannot contain spaces")
    return PartAnalysis(part, tree, frozenset(fields), _unsubscribe_always(tree))


def _check_depth(tree: nodes.Template, part: str) -> None:
    """Refuse deep nesting before anything walks the tree recursively."""
    stack: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TemplateError(
                f"expressions and blocks nest more than {MAX_DEPTH} levels deep",
                part=part, line=_line(node),
            )
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())


def _check_constructs(tree: nodes.Template, part: str) -> None:
    for node in tree.find_all(nodes.Node):
        line = _line(node)
        if not isinstance(node, ALLOWED_NODES):
            reason = next(
                (why for kind, why in REFUSED_NODES if isinstance(node, kind)),
                f"{type(node).__name__} is not allowed",
            )
            raise TemplateError(reason, part=part, line=line)
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            raise TemplateError(
                f"{node.attr!r} is not allowed: names starting with '_' are Python internals",
                part=part, line=line,
            )
        if isinstance(node, nodes.Name) and node.ctx != "load":
            raise TemplateError(f"{node.name!r} cannot be assigned", part=part, line=line)
        if isinstance(node, nodes.Filter):
            if node.name not in FILTERS:
                raise TemplateError(
                    f"unknown filter {node.name!r}{did_you_mean(node.name, FILTERS)}; "
                    f"filters are: {', '.join(FILTERS)}",
                    part=part, line=line,
                )
            if node.dyn_args is not None or node.dyn_kwargs is not None:
                raise TemplateError(
                    f"|{node.name} takes no * or ** arguments", part=part, line=line
                )


def _line(node: nodes.Node) -> int | None:
    """The node's line, or its first descendant's (the parser gives Scope none)."""
    if node.lineno:
        return node.lineno
    return next((inner.lineno for inner in node.find_all(nodes.Node) if inner.lineno), None)


def _paths(tree: nodes.Template) -> list[tuple[str, int]]:
    """Every maximal `a.b.c` chain, outermost first, with its line."""
    inner: set[int] = set()
    found: list[tuple[str, int]] = []
    for node in tree.find_all((nodes.Getattr, nodes.Name)):
        if id(node) in inner:
            continue
        names: list[str] = []
        current: nodes.Node = node
        while isinstance(current, nodes.Getattr):
            names.append(current.attr)
            current = current.node
            inner.add(id(current))
        if isinstance(current, nodes.Name):
            found.append((".".join([current.name, *reversed(names)]), node.lineno))
    return found


def _unknown(path: str) -> str:
    """Name the unknown field with the likeliest intended one, or what there is."""
    root, _, rest = path.partition(".")
    if root in SECTIONS and rest:
        names = {field.split(".", 1)[1]: field for field in SECTIONS[root]}
        close = nearest(rest, names)
        if close is not None:
            return f"unknown field {path!r} (did you mean {names[close]!r}?)"
        return f"unknown field {path!r}; {root} has {', '.join(SECTIONS[root])}"
    close = nearest(path, FIELDS)
    if close is not None:
        return f"unknown field {path!r} (did you mean {close!r}?)"
    return f"unknown field {path!r}; fields are: {', '.join(FIELDS)}"


def _check_roots(tree: nodes.Template, part: str) -> None:
    """The names the part takes from outside must all be personalisation fields."""
    try:
        undeclared = meta.find_undeclared_variables(tree)
    except jinja2.TemplateError as exc:  # constructs were checked; kept as a guard
        raise TemplateError(str(exc), part=part) from exc
    unknown = undeclared - ROOTS
    if unknown:
        path, line = next((p, ln) for p, ln in _paths(tree) if p.split(".")[0] in unknown)
        raise TemplateError(_unknown(path), part=part, line=line, field=path)


def _check_no_literal(tree: nodes.Template, part: str, chars: str, reason: str) -> None:
    """Refuse literal text or string constants holding any of `chars`."""
    for node in tree.find_all((nodes.TemplateData, nodes.Const)):
        text: object = None
        if isinstance(node, nodes.TemplateData):
            text = node.data
        elif isinstance(node, nodes.Const):
            text = node.value
        if isinstance(text, str) and any(char in text for char in chars):
            raise TemplateError(reason, part=part, line=node.lineno)


def _unsubscribe_always(tree: nodes.Template) -> bool:
    return any(
        isinstance(item, nodes.Name) and item.name == "unsubscribe_url"
        for output in tree.body
        if isinstance(output, nodes.Output)
        for item in output.nodes
    )


class _Typer:
    """Resolves fields and checks how each expression is used."""

    def __init__(self, part: str, *, url_part: bool) -> None:
        self.part = part
        self.url_part = url_part
        self.fields: set[str] = set()

    def fail(self, reason: str, node: nodes.Node, field: str | None = None) -> TemplateError:
        return TemplateError(reason, part=self.part, line=node.lineno, field=field)

    # Statements

    def template(self, tree: nodes.Template) -> set[str]:
        self.statements(tree.body)
        return self.fields

    def statements(self, body: list[nodes.Node]) -> None:
        for node in body:
            if isinstance(node, nodes.Output):
                for item in node.nodes:
                    if not isinstance(item, nodes.TemplateData):
                        self.printed(item)
            elif isinstance(node, nodes.If):
                self.typeof(node.test)
                self.statements(node.body)
                for branch in node.elif_:
                    self.typeof(branch.test)
                    self.statements(branch.body)
                self.statements(node.else_)
            else:  # unreachable after _check_constructs
                raise self.fail(f"{type(node).__name__} is not allowed", node)

    # Expressions

    def leaf(self, node: nodes.Node) -> tuple[str, Leaf]:
        """The field a Name/Getattr chain names."""
        names: list[str] = []
        current: nodes.Node = node
        while isinstance(current, nodes.Getattr):
            names.append(current.attr)
            current = current.node
        if not isinstance(current, nodes.Name):
            raise self.fail(
                f"attribute {names[-1]!r} is not allowed: only personalisation fields "
                "have attributes",
                node,
            )
        path = ".".join([current.name, *reversed(names)])
        leaf = FIELDS.get(path)
        if leaf is None:
            if path in SECTIONS:
                raise self.fail(
                    f"{path!r} is a group of fields, not a field: use "
                    f"{', '.join(SECTIONS[path])}",
                    node, path,
                )
            raise self.fail(_unknown(path), node, path)
        self.fields.add(path)
        return path, leaf

    def typeof(self, node: nodes.Node) -> ValueType:
        if isinstance(node, nodes.Const):
            return _const_type(node.value)
        if isinstance(node, (nodes.Name, nodes.Getattr)):
            return _FIELD_TYPES[self.leaf(node)[1].kind]
        if isinstance(node, nodes.Filter):
            self.filter(node)
            return ValueType.TEXT
        if isinstance(node, nodes.Concat):
            for item in node.nodes:
                self.printed(item)
            return ValueType.TEXT
        if isinstance(node, nodes.CondExpr):
            if node.expr2 is None:
                raise self.fail("'a if b' needs an else: write 'a if b else \"\"'", node)
            self.typeof(node.test)
            return _either(self.typeof(node.expr1), self.typeof(node.expr2))
        if isinstance(node, (nodes.And, nodes.Or)):
            return _either(self.typeof(node.left), self.typeof(node.right))
        if isinstance(node, nodes.Not):
            self.typeof(node.node)
            return ValueType.BOOL
        if isinstance(node, nodes.Compare):
            self.compare(node)
            return ValueType.BOOL
        raise self.fail(f"{type(node).__name__} is not allowed", node)

    def printed(self, node: nodes.Node) -> None:
        """Check an expression whose value is printed."""
        if isinstance(node, nodes.CondExpr):
            self.typeof(node)
            assert node.expr2 is not None
            self.printed(node.expr1)
            self.printed(node.expr2)
            return
        if isinstance(node, (nodes.And, nodes.Or)):
            self.printed(node.left)
            self.printed(node.right)
            return
        if isinstance(node, (nodes.Name, nodes.Getattr)):
            path, leaf = self.leaf(node)
            hint = _RAW_HINTS.get(leaf.kind)
            if hint:
                raise self.fail(f"{path} {hint}", node, path)
            if self.url_part and leaf.kind not in URL_SAFE_KINDS:
                raise self.fail(
                    f"{path} is free text and cannot go into a link", node, path
                )
            return
        if self.url_part and isinstance(node, nodes.Filter):
            self.typeof(node)
            raise self.fail(f"|{node.name} output cannot go into a link", node)
        self.typeof(node)

    def filter(self, node: nodes.Filter) -> None:
        definition = FILTERS[node.name]
        if node.node is None:  # only {% filter %} blocks, refused earlier
            raise self.fail(f"|{node.name} needs a field", node)
        wanted = definition.accepts
        example = next(path for path, leaf in FIELDS.items() if leaf.kind is wanted)
        if not isinstance(node.node, (nodes.Name, nodes.Getattr)):
            self.typeof(node.node)
            raise self.fail(
                f"|{node.name} formats a {wanted} field such as {example}", node
            )
        path, leaf = self.leaf(node.node)
        if leaf.kind is not wanted:
            raise self.fail(
                f"|{node.name} formats a {wanted} field such as {example}; "
                f"{path} is {leaf.kind}",
                node, path,
            )
        arguments = [*node.args, *(keyword.value for keyword in node.kwargs)]
        if not definition.styles:
            if arguments:
                raise self.fail(f"|{node.name} takes no arguments", node)
            return
        if len(arguments) > 1 or any(keyword.key != "style" for keyword in node.kwargs):
            raise self.fail(f"|{node.name} takes one argument, style", node)
        if arguments:
            style = arguments[0]
            if not isinstance(style, nodes.Const) or style.value not in definition.styles:
                got = repr(style.value) if isinstance(style, nodes.Const) else "an expression"
                raise self.fail(
                    f"|{node.name} style must be one of {', '.join(definition.styles)}; "
                    f"got {got}",
                    node,
                )

    def compare(self, node: nodes.Compare) -> None:
        left = self.typeof(node.expr)
        for operand in node.ops:
            right = self.typeof(operand.expr)
            if operand.op in _EQUALITY:
                pass
            elif operand.op in _ORDERING:
                if left != right or left not in (ValueType.NUMBER, ValueType.TEXT):
                    raise self.fail(
                        f"cannot order {left} and {right}: compare numbers with numbers "
                        "or text with text",
                        node,
                    )
            elif operand.op in _MEMBERSHIP:
                if left != ValueType.TEXT or right != ValueType.TEXT:
                    raise self.fail("'in' looks for text in text", node)
            else:
                raise self.fail(f"operator {operand.op!r} is not allowed", node)
            left = right


def _const_type(value: object) -> ValueType:
    if isinstance(value, bool):
        return ValueType.BOOL
    if isinstance(value, (int, float)):
        return ValueType.NUMBER
    if value is None:
        return ValueType.NONE
    return ValueType.TEXT


def _either(first: ValueType, second: ValueType) -> ValueType:
    return first if first == second else ValueType.MIXED
