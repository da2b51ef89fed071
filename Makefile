# Two commands on a fresh machine:
#   make demo   - the whole story on embedded defaults (SQLite, a broker it starts itself)
#   make test   - lint, type checks and the full test suite against real Mosquitto and PostgreSQL
# and, for the gateway's installer (as root; CI runs it after make test):
#   make test-install - the installer in a fresh Debian bookworm root made with debootstrap
#                       (cached in ~/.cache/vitrina); ARCHES=amd64,arm64 adds arm64 (qemu)
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# npm ci's own record of what it installed: the web client's dev packages (TypeScript)
WEB_STAMP := web/node_modules/.package-lock.json
ARCHES ?=

.PHONY: demo test test-install lint clean

$(STAMP): pyproject.toml
	scripts/ensure-system-packages build
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(WEB_STAMP): web/package-lock.json
	cd web && npm ci --no-audit --no-fund

demo: $(STAMP)
	$(VENV)/bin/vitrina-demo

test: $(STAMP) $(WEB_STAMP)
	scripts/ensure-system-packages
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -n 2 --dist loadfile

test-install: $(STAMP)
	scripts/ensure-system-packages --install-test $(if $(findstring arm64,$(ARCHES)),--arm64)
	VITRINA_INSTALL_ARCHES="$(ARCHES)" $(VENV)/bin/pytest -m install tests/install

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
