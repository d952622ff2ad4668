# Development and CI entry points. A machine needs only python3, node and
# npm: Python packages go into .venv and the gateway's into
# gateway_node/node_modules. Stamp files record what was installed, so a
# second run installs nothing unless a requirements or lock file changed.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip --disable-pip-version-check
GATEWAY := gateway_node

RUNTIME_STAMP := $(VENV)/.installed-requirements
DEV_STAMP := $(VENV)/.installed-requirements-dev
NODE_STAMP := $(GATEWAY)/node_modules/.installed
NODE_LOCK := $(wildcard $(GATEWAY)/package-lock.json)

# Puppeteer (pulled in by whatsapp-web.js) would download its own Chrome,
# which is neither reachable nor needed: the webjs engine uses the system
# Chromium. Where Node's headers are installed under /usr, node-gyp builds
# better-sqlite3 against them instead of downloading them.
NPM_ENV := PUPPETEER_SKIP_DOWNLOAD=true
ifneq ($(wildcard /usr/include/node/node.h),)
NPM_ENV += npm_config_nodedir=/usr
endif
ifneq ($(NODE_LOCK),)
NPM_INSTALL := npm ci --no-audit --no-fund
else
NPM_INSTALL := npm install --no-audit --no-fund
endif

# Extra arguments for pytest, e.g. make test PYTEST_ARGS="-k thin_slice -x".
PYTEST_ARGS ?=

.PHONY: help install install-dev run test lint format bench clean

help:
	@echo "make run      install what is missing, migrate, start web, gateway"
	@echo "              (and Celery worker and beat when REDIS_URL is set)"
	@echo "make test     ruff check, Django migrations check, pytest, npm test"
	@echo "make lint     ruff check and ruff format --check"
	@echo "make format   ruff format and ruff check --fix"
	@echo "make bench    run bench/run.py"
	@echo "make clean    delete .venv, node_modules, caches and test artifacts (keeps data)"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt | $(PY)
	$(PIP) install -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PIP) install -r requirements-dev.txt
	touch $@ $(RUNTIME_STAMP)

$(NODE_STAMP): $(GATEWAY)/package.json $(NODE_LOCK)
	cd $(GATEWAY) && $(NPM_ENV) $(NPM_INSTALL)
	touch $@

install: $(RUNTIME_STAMP) $(NODE_STAMP)

install-dev: $(DEV_STAMP) $(NODE_STAMP)

# run_all.py checks PORT and GATEWAY_PORT, migrates, creates the demo
# subscriber, runs collectstatic when DEBUG is off, then starts everything.
run: install
	exec $(PY) scripts/run_all.py

# Every step runs even when an earlier one fails, so one run shows all
# failures; the target fails if any step did. pytest exits with 5 when it
# collected no tests, which counts as a failure like any other non-zero
# status.
test: install-dev
	@failed=""; \
	echo "==> ruff check"; \
	$(BIN)/ruff check . || failed="$$failed ruff"; \
	echo "==> makemigrations --check"; \
	$(PY) manage.py makemigrations --check --dry-run || failed="$$failed migrations"; \
	echo "==> pytest"; \
	$(BIN)/pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests."; fi; \
	if [ $$status -ne 0 ]; then failed="$$failed pytest"; fi; \
	echo "==> npm test ($(GATEWAY))"; \
	(cd $(GATEWAY) && npm test) || failed="$$failed npm-test"; \
	if [ -n "$$failed" ]; then echo "make test failed in:$$failed"; exit 1; fi

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install-dev
	$(PY) bench/run.py

# db.sqlite3 and gateway_node/data hold the development database and the
# WhatsApp logins, so they stay; delete them by hand to start over.
clean:
	rm -rf $(VENV) $(GATEWAY)/node_modules staticfiles .run
	rm -rf .pytest_cache .ruff_cache .hypothesis artifacts
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
