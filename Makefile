# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin

export DAGSTER_HOME := $(CURDIR)/.dagster
export MLSYS_DATA_DIR ?= $(CURDIR)/data
# Never let uv fetch a Python build: this project runs on the machine's Python 3.11.
export UV_PYTHON_DOWNLOADS := never

# Two years: the models learn the yearly season from the first year's windows.
DEMO_CUSTOMERS ?= 5000
DEMO_DAYS ?= 730
# demo-drift: a weak new acquisition channel takes 45% of signups over the last DRIFT_DAYS days.
DRIFT_DAYS ?= 120
DEMO_SIMULATE_ARGS ?=
TEST_ARGS ?= -n 2

.PHONY: install pool demo demo-reset demo-drift ingest test ui serve clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.installed: uv.lock pyproject.toml | $(UV)
	@# Bytecode compiled at install: with PYTHONDONTWRITEBYTECODE set (as on this machine) every `mlsys`
	@# or `dagster` call would otherwise compile Dagster's modules again (~6 s each).
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	@# `dagster asset materialize` (1.13) finds its code location only through flags or DAGSTER_CLI_*
	@# variables, so the activate script sets them: from the repo root it then needs no -m.
	@grep -q DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME $(VENV)/bin/activate || printf '%s\n' \
	  '# mlsys: Dagster commands use this checkout and its instance' \
	  'export DAGSTER_HOME="$(CURDIR)/.dagster"' \
	  'export DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME=mlsys_assets.definitions' >> $(VENV)/bin/activate
	touch $@

install: $(VENV)/.installed

# Create the warehouse pool's slot in the instance up front: two runs that both make the first claim
# on a fresh instance could otherwise each create a slot (mlsys_tests/test_one_writer.py).
pool: install
	@$(BIN)/dagster instance concurrency set warehouse 1 > /dev/null

demo: pool demo-reset
	$(BIN)/mlsys simulate --customers $(DEMO_CUSTOMERS) --days $(DEMO_DAYS) --dirty-share 0.002 $(DEMO_SIMULATE_ARGS)
	$(BIN)/mlsys ingest
	$(BIN)/mlsys features
	$(BIN)/mlsys train
	@# Four weeks of history for the report index's trend charts: every day scored (one range run), the
	@# reports of every 7th day (a day's four reports take ~5 s; the newest day is always one of them).
	$(BIN)/mlsys predict --days 28
	$(BIN)/mlsys monitor --days 28 --every 7
	@echo
	@echo "Next:"
	@echo "  reports      -> $(MLSYS_DATA_DIR)/reports/index.html (models, gate history, trends, Evidently reports; offline)"
	@echo "  make ui      -> http://127.0.0.1:3000 (assets, runs, checks, model metrics); report links open on :3001"
	@echo "  the API      -> export MLSYS_API_TOKEN=demo-token; make serve   (docs at http://127.0.0.1:8000/docs, offline)"
	@echo "  SQL          -> $(BIN)/mlsys sql \"SELECT * FROM predictions.retention_targets ORDER BY priority LIMIT 10\""

# A new simulated shop makes the previous demo's warehouse, models and reports meaningless; a data
# directory that holds anything but a simulated shop is left alone.
demo-reset:
	@if [ -e "$(MLSYS_DATA_DIR)/warehouse.duckdb" ] && [ ! -e "$(MLSYS_DATA_DIR)/simulation/ground_truth.parquet" ]; then \
	  echo "$(MLSYS_DATA_DIR) holds data that mlsys simulate did not create: not replacing it with a demo"; exit 1; fi
	rm -rf $(addprefix $(MLSYS_DATA_DIR)/,warehouse.duckdb warehouse.duckdb.wal landing models serving reports exports simulation)

# The same demo on a shop whose customers drift: `mlsys monitor` raises the feature drift alert, the
# drift_retraining logic retrains, and the gate decides (docs/monitoring.md).
demo-drift:
	$(MAKE) demo DEMO_SIMULATE_ARGS="--drift-from $$(date -u -d '$(DRIFT_DAYS) days ago' +%F) --drift-kind channel"

ingest: pool
	$(BIN)/mlsys ingest

test: install
	$(BIN)/python -m pytest $(TEST_ARGS)

# Only the real-browser tests (Debian's chromium, offline): the report index, its dashboard, every report,
# the API's /docs and /redoc, the Dagster UI's ml/model_evaluation page. `make test` runs them too.
.PHONY: browser-test
browser-test: install
	$(BIN)/python -m pytest mlsys_tests/test_browser.py -n 0

# The report server runs beside the UI so that the report links in asset metadata open (MLSYS_REPORTS_URL,
# default http://127.0.0.1:3001). In a session of its own, Ctrl+C in the UI does not reach it: the trap
# stops its process group when `dagster dev` ends. A taken port (`make reports` running) is a one-line
# error from the report server, and the UI starts anyway.
ui: pool
	@setsid $(BIN)/mlsys reports serve & reports=$$!; \
	trap 'kill -- -$$reports 2>/dev/null' EXIT; \
	$(BIN)/dagster dev --host 127.0.0.1 --port 3000

# Only the monitoring reports over HTTP (what `make ui` starts beside the UI).
.PHONY: reports
reports: install
	$(BIN)/mlsys reports serve

serve: install
	@test -n "$$MLSYS_API_TOKEN" || { echo "set MLSYS_API_TOKEN first, e.g.: export MLSYS_API_TOKEN=\$$(openssl rand -hex 16)"; exit 1; }
	$(BIN)/mlsys serve

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache
