# Every target installs what it needs: a fresh clone only needs Python 3.11+, Go and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONTROLPLANE_BIN = $(shell bash controlplane/build.sh | tail -n1)
# The image the Dockerfile builds and the Helm chart runs by default (values.yaml image.*).
IMAGE ?= ghcr.io/chaos-registry-webhook/chaos-registry-webhook:0.1.0
CHART := charts/chaos-registry-webhook
MANIFESTS := manifests/chaos-registry-webhook.yaml
# manifests/ is this command's output; tests/unit/test_chart.py renders it the same way.
RENDER_MANIFESTS = $(CONTROLPLANE_BIN)/helm template chaos-registry-webhook $(CHART) --namespace chaos-system --include-crds

.PHONY: help venv lock test unit e2e lint controlplane cluster-up cluster-down bench manifests check-manifests demo image reliability clean

help:
	@echo "make demo         local control plane + webhook + examples: before/after image table"
	@echo "make test         unit and end-to-end tests (what CI runs)"
	@echo "make unit         unit and golden tests only (no cluster)"
	@echo "make e2e          end-to-end tests against a real kube-apiserver"
	@echo "make lint         ruff, mypy, hadolint, helm lint, vulnerability audit of the locked dependencies"
	@echo "make lock         rewrite requirements.lock and build-requirements.lock from pyproject.toml"
	@echo "make bench        benchmarks: writes bench/results.json and bench/RESULTS.md"
	@echo "make manifests    render the Helm chart into manifests/ (make check-manifests: fail if stale)"
	@echo "make image        docker build -t $(IMAGE) . (needs a container engine)"
	@echo "make cluster-up   start a local control plane for people; make cluster-down stops it"
	@echo "make reliability  full reliability and security run (RELIABILITY.md): prints its figures"

# The runtime dependencies come from the same hash-checked lock as the image's, so the tests run
# against what ships; the dev extras are added on top.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP)

# Needs the package index; keeps every pin that still satisfies pyproject (hack/lock.py).
lock: $(STAMP)
	$(PY) -m hack.lock

controlplane:
	@bash controlplane/build.sh

unit: $(STAMP)
	$(PY) -m pytest -m "not e2e" -q

e2e: $(STAMP) controlplane
	$(PY) -m pytest -m e2e -q

test: $(STAMP) controlplane
	$(PY) -m pytest -q

lint: $(STAMP) controlplane
	$(VENV)/bin/ruff check webhook controlplane tests bench hack
	$(VENV)/bin/ruff format --check webhook controlplane tests bench hack
	$(VENV)/bin/mypy webhook controlplane
	$(VENV)/bin/hadolint Dockerfile
	$(CONTROLPLANE_BIN)/helm lint --strict $(CHART)
	@$(MAKE) --no-print-directory check-manifests
	@$(PY) -m hack.audit

demo: $(STAMP)
	$(PY) hack/demo.py

manifests: controlplane
	@mkdir -p manifests
	$(RENDER_MANIFESTS) > $(MANIFESTS).tmp
	@mv $(MANIFESTS).tmp $(MANIFESTS)
	@echo "wrote $(MANIFESTS)"

check-manifests: controlplane
	@$(RENDER_MANIFESTS) | diff -u $(MANIFESTS) - > /dev/null || { \
		echo "$(MANIFESTS) is out of date with $(CHART): run 'make manifests' and commit the result" >&2; exit 1; }
	@echo "$(MANIFESTS) is up to date"

image:
	docker build -t $(IMAGE) .

# The full run of tests/reliability and the in-process fuzz test (make test runs a smaller share);
# the figures the tests collect go to .cache/reliability/figures.json and are printed, pass or fail.
reliability: $(STAMP) controlplane
	@RELIABILITY_FULL=1 $(PY) -m pytest tests/reliability tests/unit/test_fuzz_admission.py -q; \
		status=$$?; echo; $(PY) -m tests.reliability.figures full; exit $$status

# The admission benchmark (bench/RESULTS.md): a fresh local control plane with K = 10, 1,000 and
# 10,000 ChaosImageRegistry resources, serve pinned to CPU 1 and the load generator to CPU 0. Waits
# (up to 20 minutes) for a 1-minute load average under 0.7 first, then runs about 5 minutes.
bench: $(STAMP) controlplane
	$(PY) -m bench.service_bench

cluster-up: $(STAMP) controlplane
	$(PY) -m controlplane up

cluster-down: $(STAMP)
	$(PY) -m controlplane down

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
