# Every target installs what it needs: a fresh clone only needs Python 3.11+, Go and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONTROLPLANE_BIN = $(shell bash controlplane/build.sh | tail -n1)

.PHONY: help venv test unit e2e lint controlplane cluster-up cluster-down bench manifests demo reliability clean

help:
	@echo "make demo         local control plane + webhook + examples: before/after image table"
	@echo "make test         unit and end-to-end tests (what CI runs)"
	@echo "make unit         unit and golden tests only (no cluster)"
	@echo "make e2e          end-to-end tests against a real kube-apiserver"
	@echo "make lint         ruff, mypy, hadolint, helm lint"
	@echo "make bench        benchmarks: writes bench/results.json and bench/RESULTS.md"
	@echo "make manifests    render the Helm chart into manifests/"
	@echo "make cluster-up   start a local control plane for people; make cluster-down stops it"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP)

controlplane:
	@bash controlplane/build.sh

unit: $(STAMP)
	$(PY) -m pytest -m "not e2e" -q

e2e: $(STAMP) controlplane
	$(PY) -m pytest -m e2e -q

test: $(STAMP) controlplane
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check webhook controlplane tests bench
	$(VENV)/bin/ruff format --check webhook controlplane tests bench
	$(VENV)/bin/mypy webhook controlplane

cluster-up: $(STAMP) controlplane
	$(PY) -m controlplane up

cluster-down: $(STAMP)
	$(PY) -m controlplane down

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
