"""The gateway installs `vitrina[edge]` on a Pi without the cloud stack, so the
package boundaries in the design are checked on every import statement: the third-party
packages each side may use (here), and the layers between our own packages (the
import-linter contracts in pyproject.toml)."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: Third-party modules each package may import; anything else is a missing extra.
EDGE_THIRD_PARTY = {"bleak", "dbus_fast", "scapy", "paho", "tenacity", "pydantic",
                    "cryptography"}
#: cryptography: the sealed keys both sides agree on (shared/sealing.py); annotated_types
#: and pydantic_core are pydantic's own, read by the settings reference to describe bounds.
SHARED_THIRD_PARTY = {"pydantic", "annotated_types", "pydantic_core", "cryptography"}
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


def test_the_checker_notices_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import cloud.api\nfrom fastapi import FastAPI\nfrom . import sibling\n")
    assert imported_top_level_modules(bad) == {"cloud", "fastapi"}


def lint_imports() -> Path:
    found = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    return Path(found)


def contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return found


def test_the_import_contracts_hold() -> None:
    """The cloud's layers (pyproject.toml, [tool.importlinter]) and the packages' separation:
    a module importing upwards, or a new module placed in no layer, fails here."""
    result = subprocess.run([lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contracts())} kept, 0 broken" in result.stdout


def test_an_import_upwards_breaks_the_cloud_layers(tmp_path: Path) -> None:
    """The same contract over a copy of the cloud in which the database module imports
    the API: the checker names the import."""
    copy = tmp_path / "layered"
    shutil.copytree(ROOT / "cloud", copy, ignore=shutil.ignore_patterns("__pycache__"))
    for module in copy.rglob("*.py"):
        text = module.read_text()
        module.write_text(re.sub(r"\bcloud\.", "layered.", text))
    db = copy / "db.py"
    db.write_text(db.read_text() + "\nfrom layered.api import create_app  # noqa\n")
    [layers] = [contract for contract in contracts() if contract["id"] == "cloud-layers"]
    lines = ["[tool.importlinter]", 'root_packages = ["layered"]', "",
             "[[tool.importlinter.contracts]]"]
    lines += [f"{key} = {json.dumps(value)}"  # JSON strings, lists and booleans are TOML
              for key, value in {**layers, "containers": ["layered"]}.items()]
    config = tmp_path / "importlinter.toml"
    config.write_text("\n".join(lines) + "\n")
    result = subprocess.run([lint_imports(), "--no-cache", "--config", str(config)],
                            cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "layered.db -> layered.api" in result.stdout
