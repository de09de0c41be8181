# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Steerco needs Python 3.11 or newer" or 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

run: $(BIN)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo
	@echo "  Steerco is starting on http://$${HOST:-127.0.0.1}:$${PORT:-8000}/  (Ctrl-C stops web, worker and beat)"
	@echo
	$(BIN)/honcho start -f Procfile -p $${PORT:-8000}

test: $(BIN)/.installed
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python -m tests.bench.scorecard
	$(BIN)/python -m tests.bench.evaluation
	$(BIN)/python -m tests.bench.ingestion
	$(BIN)/python -m tests.bench.escalation
	$(BIN)/python -m tests.bench.propagation
	$(BIN)/python -m tests.bench.graph

lint: $(BIN)/.installed
	$(BIN)/ruff check .

clean:
	rm -rf var/broker var/celerybeat-schedule* var/steerco.sqlite3
