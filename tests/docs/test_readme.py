"""The README's two commands are the Makefile's, and CI runs the test one."""

from __future__ import annotations

import re
import shlex

from tests.docs.snippets import ROOT, snippet


def test_the_two_commands_are_make_targets_and_ci_runs_the_test_one() -> None:
    lines = snippet("README.md", "readme-commands").text.splitlines()
    commands = [shlex.split(line, comments=True) for line in lines]
    assert commands == [["make", "demo"], ["make", "test"]]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for _, target in commands:
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
    assert "\nmake test\n" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
