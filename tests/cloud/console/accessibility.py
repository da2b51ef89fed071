"""Accessibility rules checked in the browser with axe-core (vendored beside the tests, from
npm at a pinned version): WCAG 2.0 and 2.1, A and AA, and axe's best practices."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text(encoding="utf-8")
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
EVERY_IMPACT = frozenset({"minor", "moderate", "serious", "critical"})


def violations(page: Page, *, impacts: frozenset[str] = EVERY_IMPACT) -> list[str]:
    """Each rule the page breaks at one of `impacts`, with up to three of the elements
    breaking it. (Run through the browser's debugging protocol, which the page's content
    policy does not govern: the page is checked as it is served.)"""
    found: list[str] = page.evaluate(
        AXE + f"\n;axe.run(document, {{runOnly: {RULES!r}}}).then((result) => result.violations"
        f".filter((v) => {sorted(impacts)!r}.includes(v.impact))"
        ".map((v) => `${v.impact}: ${v.id}: ${v.help} (${v.nodes.slice(0, 3)"
        ".map((n) => n.target.join(' ')).join(', ')})`))"
    )
    return found
