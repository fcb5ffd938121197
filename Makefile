# Every target installs what it needs: a fresh machine with Python 3.11,
# Java 17 and Maven needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# promtool (tests/unit/ops/test_ops_config.py) comes from apt, which needs root.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The locked uv (requirements-dev.lock) installs everything else from the locks.
UV_VERSION := $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements-dev.lock)

.PHONY: lock install run test unit integration lint format kafka-start kafka-stop schemas bench bench-smoke bench-million soak reliability clean

$(STAMP): pyproject.toml requirements.lock requirements-dev.lock Makefile
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing promtool (Debian package prometheus) ..."; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends prometheus >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements-dev.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -c "from nudge.ops.local_kafka import ensure_jars; ensure_jars()"
	touch $(STAMP)

# Upgrade every pin to the newest release pyproject.toml allows; review the
# diff and run `make test` before committing it. The runtime lock (Dockerfile)
# comes first and constrains the dev lock, so both pin the same versions.
lock:
	$(BIN)/uv pip compile pyproject.toml --upgrade --python-version 3.11 --generate-hashes \
	  --custom-compile-command "make lock" -q -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev -c requirements.lock --upgrade \
	  --python-version 3.11 --generate-hashes --custom-compile-command "make lock" -q \
	  -o requirements-dev.lock

install: $(STAMP)  ## create .venv with nudge and its tools, fetch the Kafka jars

run: install  ## the main job: Kafka + worker + a scripted story, decisions printed
	$(BIN)/nudge demo

test: install lint  ## lint, then unit + integration tests (starts its own Kafka)
	$(BIN)/python -m pytest tests -q

unit: install
	$(BIN)/python -m pytest tests/unit -q

integration: install
	$(BIN)/python -m pytest tests/integration -q

reliability: install  ## faults, hostile input, security (part of test); figures -> bench/results/reliability.json
	NUDGE_RELIABILITY_REPORT=bench/results/reliability.json $(BIN)/python -m pytest tests/reliability -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The published figures (bench/results, docs/performance.md); a bare
# `python -m bench.X` writes to the git-ignored .results/bench instead.
bench: install  ## engine and pipeline benchmarks (about 40 min): docs/performance.md
	$(BIN)/python -m bench.engine --out bench/results/engine.json
	$(BIN)/python -m bench.pipeline --out bench/results/pipeline.json

bench-smoke: install  ## every benchmark at tiny settings (about 6 min): the code still runs
	$(BIN)/python -m pytest tests/integration/test_benchmarks_run.py -q
	$(BIN)/python -m bench.million --preload 500 --traffic-seconds 3 --out .results/smoke/million.json
	$(BIN)/python -m bench.soak --minutes 1 --rate 100 --out .results/smoke/soak.json

bench-million: install  ## state size, memory and restart with 500k customers (about 20 min)
	$(BIN)/python -m bench.million --out bench/results/million.json

SOAK_MINUTES ?= 10
SOAK_RATE    ?= 300
soak: install  ## SOAK_MINUTES (10) of traffic at SOAK_RATE (300/s): lag, RSS, log errors, latency
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE) \
	  --out bench/results/soak.json

schemas: install  ## regenerate schemas/json after changing a record
	$(BIN)/python -m nudge.schemas.jsonschema

kafka-start: install  ## a long-running local broker on 127.0.0.1:9092
	$(BIN)/nudge kafka start

kafka-stop: install
	$(BIN)/nudge kafka stop

clean:
	rm -rf .data .pytest_cache
