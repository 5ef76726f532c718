# Two commands do all the set-up: `make demo` and `make test`. Both are idempotent.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
RDV := $(VENV)/bin/rdv
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))

DEMO_EVENTS ?= 2000
DEMO_RATE ?= 50

.PHONY: setup jars dist demo lint test test-fast test-unit bench bench-idle bench-rendezvous soak kafka-up kafka-down kafka-status up down status lock clean

setup: $(VENV)/.installed var/jars/.installed

$(VENV)/.installed: requirements.lock pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

jars: var/jars/.installed
var/jars/.installed: deps/spark/pom.xml deps/kafka/pom.xml | $(VENV)/.installed
	bin/fetch-jars $(PY)
	touch $@

# What a cluster needs, in dist/ (rdv/operations/dist.py, docs/deployment.md): the wheel, the same packages as a
# zip for --py-files, each job's entry file, the conf with its profiles, the --packages coordinates.
dist: setup
	$(PY) -m rdv.operations.dist

demo: setup
	$(RDV) demo --events $(DEMO_EVENTS) --rate $(DEMO_RATE)

# Lint, format and type checks (pyproject.toml: [tool.ruff], [tool.mypy] over the product packages);
# `ruff format` on the same folders fixes the format.
LINTED := rdv features models rendezvous comparison jobs bench tests
lint: setup
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)
	$(PY) -m mypy

# Every test, by tier, after the lint: unit, then integration, then end-to-end; a tier with a
# failure stops the run at its end, with its failures printed (tests/conftest.py). docs/testing.md
# maps the suite.
test: setup lint
	$(PY) -m pytest tests

# The inner loop: the unit and integration tiers, in that order.
test-fast: setup lint
	$(PY) -m pytest tests/unit tests/integration

test-unit: setup
	$(PY) -m pytest tests/unit

# Every scenario at the same offered loads, on a broker of its own; results in bench/results/ and
# bench/README.md, one line per scenario at the end. BENCH_ARGS="--scenarios limit --rates 1000" narrows it.
BENCH_ARGS ?=
bench: setup
	$(PY) -m bench.run $(BENCH_ARGS)

# The running pipeline with nothing to do: its CPU, and per query what an idle micro-batch costs;
# ends with `idle: <C> cores with <M> models`. IDLE_ARGS="--rate 50" profiles it under a load.
IDLE_ARGS ?=
bench-idle: setup
	$(PY) -m bench.idle $(IDLE_ARGS)

# The rendezvous job alone on a backlog of 3-model traffic, on its own broker; ends with one line.
BENCH_RATE ?= 5000
BENCH_SECONDS ?= 40
bench-rendezvous: setup
	$(PY) -m bench.rendezvous --rate $(BENCH_RATE) --seconds $(BENCH_SECONDS)

# The pipeline at a steady load for 20 minutes: state stores, pending requests and every job's
# memory sampled, each judged bounded or growing; figures in bench/results/soak-<date>T<HHMM>.json.
SOAK_ARGS ?=
soak: setup
	$(PY) -m bench.soak $(SOAK_ARGS)

kafka-up: setup
	$(RDV) kafka up
kafka-down:
	$(RDV) kafka down
kafka-status:
	$(RDV) kafka status

up: setup
	$(RDV) up
down:
	$(RDV) down
status:
	$(RDV) status

lock: $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-dev.txt
	( head -n 2 requirements.lock; $(PY) -m pip freeze --exclude-editable --all | grep -v "^pip==" ) > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	-$(RDV) down
	rm -rf var dist build $(VENV)
