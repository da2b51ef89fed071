"""Copy the console's front-end libraries from the npm registry into the package.

The versions are pinned in cloud/api/console/package.json and its lock; this installs
exactly those (`npm ci`, no install scripts) in a scratch directory, copies the files the
console loads into cloud/api/console/static/vendor/, the licence of every package they
contain (bundled dependencies too) into static/vendor/licences/, and writes
static/vendor/MANIFEST.json: each library's version, licence and the SHA-256 of each file,
which tests/cloud/console/test_assets.py checks. axe-core (a test tool) goes to
tests/console/vendor/ instead. Run it after changing a version:

    python scripts/vendor_console_assets.py
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "cloud" / "api" / "console"
VENDOR = CONSOLE / "static" / "vendor"
TEST_VENDOR = ROOT / "tests" / "cloud" / "console" / "vendor"

#: For each library: where its files go, and which files of its package (source -> name).
FILES: dict[str, tuple[Path, dict[str, str]]] = {
    "preact": (VENDOR / "preact", {"dist/preact.mjs": "preact.js",
                                   "hooks/dist/hooks.mjs": "hooks.js"}),
    "htm": (VENDOR / "htm", {"dist/htm.module.js": "htm.js"}),
    "leaflet": (VENDOR / "leaflet", {
        "dist/leaflet.js": "leaflet.js", "dist/leaflet.css": "leaflet.css",
        **{f"dist/images/{name}": f"images/{name}" for name in (
            "layers.png", "layers-2x.png", "marker-icon.png", "marker-icon-2x.png",
            "marker-shadow.png")},
    }),
    "@geoman-io/leaflet-geoman-free": (VENDOR / "leaflet-geoman", {
        "dist/leaflet-geoman.min.js": "leaflet-geoman.js",
        "dist/leaflet-geoman.css": "leaflet-geoman.css",
    }),
    "uplot": (VENDOR / "uplot", {"dist/uPlot.esm.js": "uplot.js",
                                 "dist/uPlot.min.css": "uplot.css"}),
    "axe-core": (TEST_VENDOR, {"axe.min.js": "axe.min.js"}),
}
LICENCE_NAMES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "LICENCE.md", "license",
                 "LICENSE-MIT")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def licence_of(package: Path) -> Path | None:
    for name in LICENCE_NAMES:
        if (package / name).is_file():
            return package / name
    return None


def main() -> None:
    lock = json.loads((CONSOLE / "package-lock.json").read_text())["packages"]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(CONSOLE / name, work / name)
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                       cwd=work, check=True)
        modules = work / "node_modules"
        shutil.rmtree(VENDOR, ignore_errors=True)
        (VENDOR / "licences").mkdir(parents=True)
        manifest: dict[str, dict[str, object]] = {}
        for library, (target, files) in FILES.items():
            entry = lock[f"node_modules/{library}"]
            copied = {}
            for source, name in files.items():
                destination = target / name
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(modules / library / source, destination)
                copied[str(destination.relative_to(ROOT))] = sha256(destination)
            manifest[library] = {"version": entry["version"], "license": entry["license"],
                                 "files": copied}
        # Every installed package's licence: the libraries, and what geoman bundles.
        licences = {}
        for key, entry in lock.items():
            if not key.startswith("node_modules/") or entry.get("dev"):
                continue
            package = key.removeprefix("node_modules/")
            found = licence_of(modules / package)
            if found is None:
                raise SystemExit(f"{package} ships no licence file: add it by hand")
            name = f"{package.replace('/', '__')}-{entry['version']}.txt"
            shutil.copy(found, VENDOR / "licences" / name)
            licences[package] = {"version": entry["version"], "license": entry["license"],
                                 "file": name}
        axe = licence_of(modules / "axe-core")
        assert axe is not None
        shutil.copy(axe, TEST_VENDOR / "axe-core-LICENSE.txt")
        (VENDOR / "MANIFEST.json").write_text(json.dumps(
            {"libraries": manifest, "licences": licences}, indent=2, sort_keys=True) + "\n")
    print(f"vendored {len(manifest)} libraries and {len(licences)} licences into {VENDOR}")


if __name__ == "__main__":
    main()
