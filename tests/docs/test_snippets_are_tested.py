"""No runnable block in the docs goes untested: each has an id, and a test names it."""

from __future__ import annotations

from pathlib import Path

from tests.docs.snippets import ROOT, Snippet, documents, snippets

TESTS = ROOT / "tests"


def _runnable() -> list[Snippet]:
    return [one for path in documents() for one in snippets(path) if one.runnable]


def _test_sources() -> str:
    here = Path(__file__).resolve()
    return "\n".join(path.read_text(encoding="utf-8") for path in TESTS.rglob("*.py")
                     if path.resolve() != here)


def test_every_runnable_block_has_an_id() -> None:
    missing = [one.where() for one in _runnable() if one.id is None]
    assert missing == [], f"blocks with no id= (mark output as ```text): {missing}"


def test_ids_are_unique_within_a_document() -> None:
    for path in documents():
        ids = [one.id for one in snippets(path) if one.id]
        assert len(ids) == len(set(ids)), f"{path}: an id used twice"


def test_every_id_is_named_by_a_test() -> None:
    sources = _test_sources()
    untested = [f"{one.where()} id={one.id}" for one in _runnable()
                if one.id and f'"{one.id}"' not in sources]
    assert untested == [], f"blocks no test runs or checks: {untested}"
