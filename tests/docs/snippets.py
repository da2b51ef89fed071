"""The fenced blocks of the documentation, read the way a reader copies them.

Every block a reader would run or paste carries an id in its info string
(```` ```sh id=quickstart-start ````; GitHub shows only the first word, the language), and
a test runs or checks it by that id (`snippet("docs/quickstart.md", "quickstart-start")`).
`test_snippets_are_tested.py` fails when a runnable block has no id, or an id no test
names, so a snippet cannot be added to the docs and left unchecked.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# Blocks that are read, not run: what a command prints, a sketch of a layout, an HTTP
# exchange shown as text. Everything else is code a reader would copy and must be tested.
SHOWN_ONLY = frozenset({"", "text", "console-output", "output", "http"})


@dataclass(frozen=True, slots=True)
class Snippet:
    """One fenced block: where it is, its language, its `key=value` attributes, its text."""

    path: Path
    line: int
    language: str
    attributes: dict[str, str]
    text: str

    @property
    def id(self) -> str | None:
        return self.attributes.get("id")

    @property
    def runnable(self) -> bool:
        return self.language not in SHOWN_ONLY

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _parse_info(info: str) -> tuple[str, dict[str, str]]:
    words = shlex.split(info)
    if not words:
        return "", {}
    language, rest = words[0], words[1:]
    attributes = dict(word.split("=", 1) for word in rest if "=" in word)
    return language, attributes


@cache
def snippets(path: Path | str) -> tuple[Snippet, ...]:
    """Every fenced block of one Markdown file, in order."""
    file = ROOT / path if not Path(path).is_absolute() else Path(path)
    tokens = MarkdownIt("commonmark").parse(file.read_text(encoding="utf-8"))
    found = []
    for token in tokens:
        if token.type != "fence" or token.map is None:
            continue
        language, attributes = _parse_info(token.info)
        found.append(Snippet(path=file, line=token.map[0] + 1, language=language,
                             attributes=attributes, text=token.content))
    return tuple(found)


def snippet(path: Path | str, snippet_id: str) -> Snippet:
    """The one block of `path` with this id (a KeyError names the ids there are)."""
    matching = [one for one in snippets(path) if one.id == snippet_id]
    if len(matching) != 1:
        ids = sorted(one.id for one in snippets(path) if one.id)
        raise KeyError(f"{path}: {len(matching)} blocks with id={snippet_id}; ids: {ids}")
    return matching[0]


def documents() -> list[Path]:
    """The Markdown files whose blocks are held to being tested."""
    return sorted([ROOT / "README.md", ROOT / "docker" / "README.md", *DOCS.rglob("*.md")])
