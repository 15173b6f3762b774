# Rossby developer commands. The two that matter: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard proto/rossby/v1/*.proto)
CASSANDRA := $(PYTHON) deploy/cassandra/launcher.py
TOXIPROXY := $(PYTHON) deploy/wan/toxiproxy.py

.PHONY: venv install proto proto-check run test test-sqlite lint audit fmt cassandra cassandra-2dc cassandra-3 cassandra-stop cassandra-fetch cassandra-3dc-wan toxiproxy-fetch bench clean

venv: $(STAMP)

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Generated code is committed (a fresh clone runs without protoc); `proto-check`
# fails when it drifts from proto/.
proto: $(STAMP)
	PATH=$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --mypy_out=. $(PROTOS)

proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && \
	PATH=$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -Iproto --python_out=$$tmp --grpc_python_out=$$tmp --mypy_out=$$tmp $(PROTOS) && \
	for f in $$tmp/rossby/v1/*; do \
	  cmp -s $$f rossby/v1/$$(basename $$f) || { echo "generated $$(basename $$f) drifts from proto/: run 'make proto' and commit"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "proto: generated code up to date"

run: $(STAMP)
	mkdir -p var
	$(VENV)/bin/rossby migrate --store sqlite:///var/rossby.db
	exec $(VENV)/bin/rossby serve --store sqlite:///var/rossby.db --listen 127.0.0.1:1205 --notifier outbox --outbox-dir var/outbox

cassandra-fetch: $(STAMP)
	$(CASSANDRA) fetch

# Toxiproxy (the WAN tests' inter-DC links), built with `go build` from the
# pins in deploy/wan/go.mod and go.sum into ~/.cache/rossby/toxiproxy-2.5.0/bin.
# Idempotent: a no-op once built.
toxiproxy-fetch:
	$(TOXIPROXY) fetch

test: $(STAMP) proto-check cassandra-fetch toxiproxy-fetch
	$(PY) -m pytest -ra $(PYTEST_ARGS)

test-sqlite: $(STAMP) toxiproxy-fetch
	$(PY) -m pytest -ra -m "not cassandra" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check rossby tests bench deploy
	$(VENV)/bin/ruff format --check rossby tests bench deploy docs README.md
	$(VENV)/bin/mypy
ifeq ($(SKIP_AUDIT),1)
	@echo "lint: dependency audit SKIPPED (SKIP_AUDIT=1); run 'make audit' where PyPI's JSON API is reachable"
else
	$(MAKE) --no-print-directory audit
endif

# Dependency audit of everything installed in the venv, against PyPI's
# advisory data. --strict: a package the service cannot look up fails the
# audit instead of passing unchecked. Needs pypi.org's JSON API (a mirror
# that serves only the simple index, as in the development sandbox, makes
# every package "not found"); there, `make lint SKIP_AUDIT=1` says it skipped.
audit: $(STAMP)
	$(VENV)/bin/pip-audit --strict --skip-editable --progress-spinner off

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix rossby tests bench deploy
	$(VENV)/bin/ruff format rossby tests bench deploy

# Every benchmark side by side (bench/run_all.py: gRPC echo, storage ceilings,
# Rossby on SQLite and Cassandra with server CPU per call, Synapse if /tmp/bench-synapse-venv exists) and
# the per-stage cost breakdown on both backends (bench/breakdown.py). About 4
# minutes on 2 cores; starts (and stops) a 1-node Cassandra when none answers on
# 127.0.0.1:9042. Results in bench/out/; see docs/benchmarks.md. More flags:
# make bench BENCH_ARGS="--skip synapse --keyspace rossby_mine".
bench: $(STAMP)
	$(PY) bench/run_all.py --seconds 5 --breakdown $(BENCH_ARGS)

cassandra: $(STAMP)
	$(CASSANDRA) start --nodes 1 --dcs 1

cassandra-2dc: $(STAMP)
	$(CASSANDRA) start --nodes 2 --dcs 2

# Three regions (dc1, dc2, dc3; one node each) with 40 ms one-way between them
# through Toxiproxy (docs/wan.md). More: make cassandra-3dc-wan WAN_ARGS="--wan-jitter-ms 5".
cassandra-3dc-wan: $(STAMP) toxiproxy-fetch
	$(CASSANDRA) start --nodes 3 --dcs 3 --wan-latency-ms 40 $(WAN_ARGS)

cassandra-3: $(STAMP)
	$(CASSANDRA) start --nodes 3 --dcs 1

cassandra-stop:
	$(CASSANDRA) stop

clean:
	rm -rf var build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
