"""The gateway installs `vitrina[edge]` on a Pi without the cloud stack, so the
package boundaries in the design are checked on every import statement."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Third-party modules each package may import; anything else is a missing extra.
EDGE_THIRD_PARTY = {"bleak", "scapy", "paho", "tenacity", "pydantic"}
SHARED_THIRD_PARTY = {"pydantic"}
OUR_PACKAGES = {"edge", "cloud", "shared", "provisioning", "sandbox", "demo", "tests", "bench"}


def imported_top_level_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def imports_of(package: str) -> dict[Path, set[str]]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no modules"
    return {path: imported_top_level_modules(path) for path in files}


def offenders(package: str, allowed: set[str]) -> list[str]:
    stdlib = set(sys.stdlib_module_names)
    found = []
    for path, modules in imports_of(package).items():
        for module in sorted(modules - stdlib - allowed):
            found.append(f"{path.relative_to(ROOT)} imports {module}")
    return found


def test_edge_imports_only_shared_and_its_extras() -> None:
    assert offenders("edge", {"edge", "shared"} | EDGE_THIRD_PARTY) == []


def test_shared_imports_nothing_of_ours() -> None:
    assert offenders("shared", {"shared"} | SHARED_THIRD_PARTY) == []


def test_cloud_never_imports_the_gateway() -> None:
    forbidden = {"edge"}
    found = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path, modules in imports_of("cloud").items()
        for module in modules & forbidden
    ]
    assert found == []


@pytest.mark.parametrize("package", ["edge", "cloud"])
def test_products_do_not_import_test_or_demo_code(package: str) -> None:
    forbidden = {"tests", "bench", "demo", "sandbox"}
    found = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path, modules in imports_of(package).items()
        for module in modules & forbidden
    ]
    assert found == []


def test_the_checker_notices_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import cloud.api\nfrom fastapi import FastAPI\nfrom . import sibling\n")
    assert imported_top_level_modules(bad) == {"cloud", "fastapi"}
