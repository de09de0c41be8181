# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench load chaos clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Steerco needs Python 3.11 or newer" or 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# Links in emails (the demo's invitations included) point at the server this starts.
run: export SITE_URL ?= http://$(or $(HOST),127.0.0.1):$(or $(PORT),8000)
run: $(BIN)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo
	@echo "  Steerco is starting on http://$${HOST:-127.0.0.1}:$${PORT:-8000}/  (Ctrl-C stops web, worker and beat)"
	@echo
	@# honcho answers Ctrl-C with 130 once web, worker and beat have stopped: that is the normal way out.
	$(BIN)/honcho start -f Procfile -p $${PORT:-8000} \
	  || [ $$? -eq 130 ]

# axe-core, which the browser tests (tests/browser) load into Chromium; the lockfile pins it, with no addresses.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test: $(BIN)/.installed node_modules/.installed
	$(BIN)/pytest $(PYTEST_ARGS)

# One run of every benchmark; the figures go to var/bench/report.json and report.md (tests/perf/bench/report.py).
# PostgreSQL and Redis on this machine unless DATABASE_URL and CELERY_BROKER_URL say otherwise.
bench: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/steerco
bench: export CELERY_BROKER_URL ?= redis://127.0.0.1:6379/14
bench: $(BIN)/.installed
	rm -f var/bench/figures.jsonl
	$(BIN)/python -m tests.perf.bench.scorecard
	$(BIN)/python -m tests.perf.bench.share
	$(BIN)/python -m tests.perf.bench.evaluation
	$(BIN)/python -m tests.perf.bench.ingestion
	$(BIN)/python -m tests.perf.bench.measurements
	$(BIN)/python -m tests.perf.bench.connectors
	$(BIN)/python -m tests.perf.bench.escalation
	$(BIN)/python -m tests.perf.bench.propagation
	$(BIN)/python -m tests.perf.bench.graph
	$(BIN)/python -m tests.perf.bench.formulas
	$(BIN)/python -m tests.perf.bench.secrets
	$(BIN)/python -m tests.perf.bench.latency
	$(BIN)/python -m tests.perf.bench.observability
	$(BIN)/python -m tests.perf.bench.slack
	$(BIN)/python -m tests.perf.bench.exports
	$(BIN)/python -m tests.perf.bench.foresight
	$(BIN)/python -m tests.perf.bench.report

# gunicorn on PostgreSQL + Redis driven for 60 s (LOAD_SECONDS) from another process: req/s, p50/p99, errors.
load: $(BIN)/.installed
	$(BIN)/python -m tests.perf.load

# kill -9 the worker mid-sweep, restart Redis and PostgreSQL (its own instances), then check nothing was lost.
chaos: $(BIN)/.installed
	$(BIN)/python -m tests.perf.chaos

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	DJANGO_SETTINGS_MODULE=config.settings.local $(BIN)/python manage.py lintmigrations  # config/operations/migration_linter.py

clean:
	rm -rf var/broker var/celerybeat-schedule* var/steerco.sqlite3 var/screenshots var/bench var/chaos
