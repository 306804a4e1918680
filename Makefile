# The two commands: `make demo` and `make test`. Each creates .venv and installs
# the project on first use (and again whenever pyproject.toml changes).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export ALPHALINE_HOME ?= $(CURDIR)/.alphaline

.PHONY: install demo test ui serve bench clean

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
bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks $(BENCH_ARGS)

clean:
	rm -rf .alphaline dbt/target dbt/logs
