# The two commands: `make demo` and `make test`. Each creates .venv and installs
# the project on first use (and again whenever pyproject.toml changes).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export ALPHALINE_HOME ?= $(CURDIR)/.alphaline

.PHONY: install demo test ui serve docs data-docs feast-ui trader-api bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# `make demo DEMO_ARGS="--symbols 16 --sessions 80"` for a smaller run, `--as-of 2026-10-30` for another pinned day.
demo: $(STAMP)
	$(BIN)/alphaline demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest

# Distinct default ports so both run side by side; `make serve PORT=3005`, `make ui PORT=3100` pick others.
ui: PORT ?= 3000
ui: $(STAMP)
	$(BIN)/alphaline ui --port $(PORT)

serve: PORT ?= 3001
serve: $(STAMP)
	$(BIN)/python -m serving.serve --port $(PORT)

# Every benchmark, each as a module from the repository root, then one verdict table in
# $(ALPHALINE_HOME)/reports/bench.md. `make bench BENCH_ARGS="--quick"` for a smoke run,
# `make bench BENCH_ARGS="trader compliance"` for some of them.
# Every other UI on its own port, offline, on the state in ALPHALINE_HOME (after `make demo`):
# dbt docs (models, tests, lineage) on 3003. The docs go to $ALPHALINE_HOME/dbt/docs, beside Dagster's manifest.
DBT_ENV = ALPHALINE_WAREHOUSE=$(abspath $(ALPHALINE_HOME))/warehouse.duckdb DBT_TARGET_PATH=$(abspath $(ALPHALINE_HOME))/dbt/docs \
	DBT_LOG_PATH=$(abspath $(ALPHALINE_HOME))/dbt/logs DBT_SEND_ANONYMOUS_USAGE_STATS=false
docs: PORT ?= 3003
docs: $(STAMP)
	cd dbt && $(DBT_ENV) ../$(BIN)/dbt docs generate --profiles-dir . --project-dir . --quiet
	@echo "dbt docs on http://127.0.0.1:$(PORT) (Great Expectations data docs: make data-docs)"
	cd dbt && $(DBT_ENV) ../$(BIN)/dbt docs serve --profiles-dir . --project-dir . --host 127.0.0.1 --port $(PORT) --no-browser

# Great Expectations data docs (marts.bars and the compliance suites) on 3004; or open reports/data_docs/index.html.
data-docs: PORT ?= 3004
data-docs: $(STAMP)
	@echo "data docs on http://127.0.0.1:$(PORT)"
	$(BIN)/python -m http.server $(PORT) --bind 127.0.0.1 --directory $(ALPHALINE_HOME)/reports/data_docs

# Feast's UI (entities, feature views, data sources) on 3002.
feast-ui: PORT ?= 3002
feast-ui: $(STAMP)
	cd feature_repo && ALPHALINE_HOME=$(abspath $(ALPHALINE_HOME)) FEAST_USAGE=False ../$(BIN)/feast ui --host 127.0.0.1 --port $(PORT)

# The trader's ops API (/docs, /status, /pnl, /health, /metrics) on 8080; MODE=sim reads the demo's session.
trader-api: PORT ?= 8080
trader-api: MODE ?= live
trader-api: $(STAMP)
	$(BIN)/trader api --mode $(MODE) --port $(PORT)

bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks $(BENCH_ARGS)

clean:
	rm -rf .alphaline dbt/target dbt/logs
