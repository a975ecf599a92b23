# TrainWatch. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PORT ?= 8000
DATABASE_URL ?= postgres://trainwatch:trainwatch@127.0.0.1:5432/trainwatch
CELERY_BROKER_URL ?= redis://127.0.0.1:6379/0
export PORT DATABASE_URL CELERY_BROKER_URL

PYTHON_BIN ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
MANAGE := $(PY) backend/manage.py
WEB_WORKERS ?= 3
CELERY := cd backend && ../$(VENV)/bin/celery -A trainwatch

.PHONY: help
help: ## Show this list
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The whole tree from the lock, hashes checked, into a venv made anew whenever the lock changes (so
# that it holds exactly what the lock lists); then the agent, editable, without its dependencies
# (they are in the lock) and built without a download.
$(VENV)/.installed: requirements.txt requirements-dev.txt agent/pyproject.toml
	@command -v $(PYTHON_BIN) >/dev/null || { sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q python3 python3-venv; }
	@command -v $(PYTHON_BIN) >/dev/null && py=$(PYTHON_BIN) || py=python3; \
		rm -rf $(VENV) && $$py -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e ./agent
	$(PY) -m pip check -q
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Python packages into .venv, exactly as locked (requirements-dev.txt, with hashes)

# uv resolves; what it writes is read by plain pip. The existing lock's versions are kept unless
# UPGRADE names packages (UPGRADE="django celery") or is "all".
UV_PIP_COMPILE = $(VENV)/bin/uv pip compile --quiet --generate-hashes --custom-compile-command "make lock" \
	$(if $(filter all,$(UPGRADE)),--upgrade,$(UPGRADE:%=--upgrade-package %))
UV_COMPILE = $(UV_PIP_COMPILE) --universal --python-version 3.11

.PHONY: lock
lock: venv ## Re-lock the whole tree from requirements*.in (UPGRADE=pkg or UPGRADE=all to move versions)
	$(UV_COMPILE) requirements.in -o requirements.txt
	$(UV_COMPILE) requirements-dev.in -c requirements.txt --no-emit-package trainwatch-agent -o requirements-dev.txt
	@# What the agent's zipapp, .deb and image bundle: one set for every node, so resolved for the
	@# oldest Python the agent supports.
	$(UV_PIP_COMPILE) --python-version 3.9 agent/pyproject.toml -o agent/requirements-node.txt

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q nodejs npm; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: frontend
frontend: node_modules/.installed ## Front-end libraries from npm (uPlot), served by Django

.PHONY: chromium
chromium: ## Debian's Chromium for the browser tests (Playwright drives it; it downloads none)
	@[ -x /usr/bin/chromium ] || { sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q chromium; }

.PHONY: run
run: venv frontend services ## The whole system on this machine, watching itself (DEMO=1: demo history too)
	@scripts/run.sh

.PHONY: test-tools
test-tools: chromium ## What the tests use beyond Python: Chromium, a compose CLI, nginx (the proxy), lintian (the agent's .deb)
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); $$sudo apt-get update -q && $$sudo apt-get install -y -q docker-compose; }
	@[ -x /usr/sbin/nginx ] || { sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q nginx-light; }
	@command -v lintian >/dev/null || { sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q lintian; }

.PHONY: agent-dist
agent-dist: venv ## The agent for nodes, into dist/: one file (trainwatch-agent.pyz) and a .deb (docs/agent.md)
	$(PY) agent/packaging/build.py

.PHONY: services
services: ## TimescaleDB and Redis up and reachable (installs what is missing)
	@scripts/services.sh

.PHONY: migrate
migrate: venv services ## Apply database migrations
	$(MANAGE) migrate --no-input

.PHONY: web
web: venv frontend ## The web app: gunicorn on 127.0.0.1:$(PORT) (settings: backend/gunicorn.conf.py)
	cd backend && exec ../$(VENV)/bin/gunicorn trainwatch.wsgi --bind 127.0.0.1:$(PORT) \
		--workers $(WEB_WORKERS) --access-logfile -

.PHONY: worker
worker: venv ## The Celery worker (classification, tiers, retention)
	$(CELERY) worker --loglevel INFO

.PHONY: beat
beat: venv ## Celery beat (sweeper, tier refresh, retention schedule)
	$(CELERY) beat --loglevel INFO --schedule /tmp/trainwatch-celerybeat-schedule

.PHONY: test
test: venv frontend test-tools services ## Install what is needed, then run the whole test suite
	$(VENV)/bin/pytest

.PHONY: lint
lint: venv ## ruff check and format check
	$(VENV)/bin/ruff check backend tests bench agent
	$(VENV)/bin/ruff format --check backend tests bench agent

.PHONY: bench-ingest
bench-ingest: venv services ## Ingest: /healthz floor, single samples, batches, COPY ceiling, then the catch-up scenario
	@command -v wrk >/dev/null || { sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q wrk; }
	$(PY) bench/ingest.py
	$(PY) bench/catchup.py

.PHONY: bench-catchup
bench-catchup: venv services ## After an outage: 1,000 agents replay 10 minutes of spool each while sampling live
	$(PY) bench/catchup.py

.PHONY: bench-report
bench-report: venv services ## The fleet report: 1,000 servers × 30 days of tiers over HTTP, and a small fleet from raw rows
	$(PY) bench/report.py --fine

.PHONY: bench-agent
bench-agent: venv ## Agent CPU and RSS per sample vs prometheus-node-exporter (3 min)
	$(PY) bench/agent.py

.PHONY: bench-workloads
bench-workloads: venv ## What naming GPU processes' workloads costs the agent per sample (fake NVML, real processes; seconds)
	$(PY) bench/workloads.py

.PHONY: bench-api
bench-api: venv services ## Dashboard API latency at 100 k, 1 M and 10 M snapshots (100 servers)
	$(PY) bench/api.py

.PHONY: bench-history
bench-history: venv services ## History from tiers vs raw over 30 and 90 days; ingest with tier refresh on/off
	$(PY) bench/history.py

.PHONY: bench-validation
bench-validation: venv ## Ingest body validation: hand-written checks vs msgspec vs pydantic, µs per body
	$(PY) bench/validation.py

.PHONY: bench-page
bench-page: venv frontend chromium services ## Dashboard page: time until every chart is drawn, bytes transferred
	$(PY) bench/page.py
