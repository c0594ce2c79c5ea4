# The two commands of the README: `make up` runs the platform, `make test` runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PYTHON := $(VENV)/bin/python
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

# Debian packages the tests use: promtool (rules and PromQL checks) comes with prometheus; age
# encrypts the backups (platform/dr); pgbackrest archives WAL for point-in-time recovery (dr-drill).
DEBIAN_PACKAGES := prometheus age pgbackrest
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help install system-packages go-tools up test test-suite lint format check-deploy image test-containers cluster-up cluster-down cluster-test dr-drill drills bench dashboards clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(INSTALLED): requirements.txt requirements-dev.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(INSTALLED)  ## create the virtual environment and install the pinned packages

system-packages:  ## install the Debian packages the tests need, if missing
	@command -v promtool >/dev/null && command -v age >/dev/null && command -v pgbackrest >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES); }

# Jaeger (traces), which `make up` runs and the trace tests start, is built from its Go module the
# first time, into ~/.cache/platform: minutes, once per machine, and before pytest starts, so that a
# cold build is not counted against a test's timeout.
go-tools:
	platform/tools/go-tool.sh platform/tools/jaeger github.com/jaegertracing/jaeger/cmd/jaeger >/dev/null

up: $(INSTALLED) go-tools  ## run auth, orders, payments, notifications on 127.0.0.1:8001-8004, Jaeger on :16686 (Ctrl-C stops all)
	PYTHON=$(PYTHON) platform/local-setup.sh
	GIT_SHA=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown) \
	OTEL_EXPORTER_OTLP_ENDPOINT=$${OTEL_EXPORTER_OTLP_ENDPOINT-http://127.0.0.1:4318} \
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/honcho --procfile platform/Procfile --app-root . --env data/local.env start

# Every shell script of the repository: the platform's, CI's and the deploy tooling's.
SHELL_SCRIPTS = .ci/run $(wildcard platform/*.sh platform/*/*.sh platform/*/*/*.sh deploy/overlays/*/*.sh deploy/cluster/*.sh deploy/gateway/*.sh deploy/*.sh deploy/kind/*.sh)

lint: $(INSTALLED)  ## ruff lint and format check, shellcheck, import boundaries (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/shellcheck --external-sources $(SHELL_SCRIPTS)
	$(BIN)/lint-imports

format: $(INSTALLED)  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint test-suite test-containers cluster-test  ## lint, the whole suite, the image and compose stack, the cluster suite: all for real

# pytest-xdist: one worker per core (TEST_WORKERS=0 runs the suite in this one process). A test file
# stays on one worker, so what its module fixtures start is started once.
TEST_WORKERS ?= auto

test-suite: $(INSTALLED) system-packages go-tools  ## the pytest suite (SQLite; PostgreSQL when DATABASE_URL points at it)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

image: $(INSTALLED)  ## build the one image (platform-app:local; IMAGE=, APP_VERSION= to change)
	PYTHON=$(PYTHON) platform/containers/image.sh

# The session builds the image (and, with no registry, the stand-in base images) before the first
# test: the timeout covers that cold build, not only the test.
test-containers: $(INSTALLED)  ## build the image, run the compose stack, the journey through it, tear it down
	$(BIN)/pytest -m containers --timeout=2400 tests/containers

check-deploy: $(INSTALLED) system-packages  ## render, validate and test the Kubernetes manifests and the blue/green tool
	$(BIN)/pytest deploy -q

cluster-up: $(INSTALLED) system-packages  ## the local single-node Kubernetes (built from source once) with the platform deployed
	deploy/cluster/up.sh
	PYTHON=$(abspath $(PYTHON)) deploy/cluster/platform.sh

# --purge: the next cluster-up starts from nothing (etcd, the database's volume, certificates), so
# it never meets data made with other secrets. Only the built binaries and images stay cached.
cluster-down:  ## stop the local cluster and remove everything it made (binaries stay cached)
	deploy/cluster/down.sh --purge

# Starts the cluster first (and stops it after) when none is running with the platform deployed;
# the timeout covers that cold start, which builds Kubernetes from source once per machine. With
# CLUSTER_TEST_KIND=NAME, the same suite on the kind cluster deploy/kind/up.sh deployed to.
cluster-test: $(INSTALLED) system-packages  ## releases and rollbacks of every service under k6 load on the real cluster, pod kills
	$(BIN)/pytest -m cluster --timeout=3600 --durations=15 tests/cluster

dr-drill: $(INSTALLED) system-packages  ## back up every service database (PostgreSQL), lose them, restore (from dumps, then to a point in time), verify; prints RPO and RTO
	platform/postgres/test-server.sh
	$(PYTHON) platform/dr/drill.py $(DR_DRILL_ARGS)
	$(PYTHON) platform/dr/pitr.py

drills: $(INSTALLED)  ## failure drills under k6 load on 127.0.0.1 (PostgreSQL, which one drill restarts); results in perf/results
	platform/postgres/test-server.sh
	$(PYTHON) perf/drills.py $(DRILLS_ARGS)

# The side-by-side benchmark (perf/ratios.py): the services' hot requests as a ratio of a bare Django
# view's throughput, on SQLite and on PostgreSQL. BENCH_ARGS="--scenario journey" runs a load scenario.
bench: $(INSTALLED)  ## the services against a bare Django view, SQLite and PostgreSQL, on 127.0.0.1; results in perf/results
	platform/postgres/test-server.sh
	$(PYTHON) perf/bench.py --scenario ratios $(BENCH_ARGS)

dashboards: $(INSTALLED) system-packages  ## every dashboard panel queried from a real Prometheus under k6 load, drawn to docs/dashboards
	$(PYTHON) perf/dashboards.py $(DASHBOARDS_ARGS)

clean:  ## remove local databases and runtime state (keeps the virtual environment)
	rm -rf data staticfiles .pytest_cache
