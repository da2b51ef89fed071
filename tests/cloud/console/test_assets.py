"""What the console ships: the vendored libraries are the pinned versions, byte for byte,
each with its licence, and no page or script loads anything from another site."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from cloud.api.console.pages import HERE

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = json.loads((HERE / "static" / "vendor" / "MANIFEST.json").read_text())
LOCK = json.loads((HERE / "package-lock.json").read_text())["packages"]
PINNED = json.loads((HERE / "package.json").read_text())
#: An address of another site in our own pages and scripts (the vendored libraries are
#: checked by their checksums instead: their source mentions their home pages).
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|"""
                      r"""import\s*[^;]*?from\s*["'](?:https?:)?//""")


def test_every_vendored_file_is_the_pinned_version_byte_for_byte() -> None:
    wanted = {**PINNED["dependencies"], **PINNED["devDependencies"]}
    assert set(MANIFEST["libraries"]) == set(wanted)
    for library, entry in MANIFEST["libraries"].items():
        assert entry["version"] == wanted[library] == LOCK[f"node_modules/{library}"]["version"]
        for path, digest in entry["files"].items():
            content = (ROOT / path).read_bytes()
            assert hashlib.sha256(content).hexdigest() == digest, f"{path} differs from npm's"


def test_every_shipped_package_has_its_licence() -> None:
    licences = HERE / "static" / "vendor" / "licences"
    shipped = {key.removeprefix("node_modules/") for key, entry in LOCK.items()
               if key.startswith("node_modules/") and not entry.get("dev")}
    assert set(MANIFEST["licences"]) == shipped
    for entry in MANIFEST["licences"].values():
        text = (licences / entry["file"]).read_text(errors="replace")
        assert len(text) > 100, entry["file"]
    axe = ROOT / "tests" / "cloud" / "console" / "vendor" / "axe-core-LICENSE.txt"
    assert "Mozilla Public License" in axe.read_text()


def test_nothing_is_loaded_from_another_site() -> None:
    own = [*(HERE / "templates").glob("*.html"), *(HERE / "static").glob("*.css"),
           *(HERE / "static" / "js").rglob("*.js")]
    assert len(own) > 10
    for path in own:
        found = EXTERNAL.search(path.read_text())
        assert found is None, f"{path.relative_to(ROOT)} loads {found.group(0)!r}"
