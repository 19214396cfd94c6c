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
# manifests/ is this command's output; tests/unit/test_chart.py renders it the same way. Without the
# `helm test` objects: `kubectl apply` would make them ordinary, permanent objects.
RENDER_MANIFESTS = $(CONTROLPLANE_BIN)/helm template chaos-registry-webhook $(CHART) --namespace chaos-system --include-crds --skip-tests

.PHONY: help venv test unit e2e node-test node-deps node-binaries lint controlplane cluster-up cluster-down bench bench-node manifests check-manifests demo image image-local lock reliability clean

help:
	@echo "make demo         local control plane + webhook + examples: before/after image table"
	@echo "make test         unit and end-to-end tests (what CI runs)"
	@echo "make unit         unit and golden tests only (no cluster)"
	@echo "make e2e          end-to-end tests against a real kube-apiserver"
	@echo "make node-test    the real-node tier alone: kubelet, containerd, local registry (root)"
	@echo "make lint         ruff, mypy, import layers (lint-imports), hadolint, helm lint, vulnerability audit"
	@echo "make lock         rewrite requirements.lock and build-requirements.lock from pyproject.toml"
	@echo "make bench        benchmarks: writes bench/results.json and bench/RESULTS.md"
	@echo "make bench-node   pod create to Running on the real node, with and without the webhook (root)"
	@echo "make manifests    render the Helm chart into manifests/ (make check-manifests: fail if stale)"
	@echo "make image        docker build -t $(IMAGE) . (needs a container engine)"
	@echo "make image-local  the same image without a container engine (buildah, as root): an OCI archive"
	@echo "make cluster-up   start a local control plane for people (NODE=1: with a real node); make cluster-down stops it"
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

# The real-node tier (tests/node): Debian packages (root, apt), kubelet, scheduler, controller manager
# and Argo (workflow-controller, argoexec): about 10 minutes of builds once, then cached.
node-deps:
	@bash controlplane/install-node-deps.sh

node-binaries: node-deps
	@bash controlplane/build.sh node argo >/dev/null

unit: $(STAMP)
	$(PY) -m pytest -m "not e2e and not node" -q

e2e: $(STAMP) controlplane
	$(PY) -m pytest -m e2e -q

test: $(STAMP) controlplane node-binaries
	$(PY) -m pytest -q

node-test: $(STAMP) controlplane node-binaries
	$(PY) -m pytest -m node -q

lint: $(STAMP) controlplane
	$(VENV)/bin/ruff check webhook controlplane tests bench hack
	$(VENV)/bin/ruff format --check webhook controlplane tests bench hack
	$(VENV)/bin/mypy webhook controlplane bench
	$(VENV)/bin/lint-imports --no-cache
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

# The Dockerfile built by buildah on a Debian stand-in for its base (controlplane/build-image.sh),
# written as an OCI archive and cached by its inputs; prints the archive's path.
image-local:
	@bash controlplane/build-image.sh $(IMAGE)

# Hostile input, by class (RELIABILITY.md section 6): pods in-process and through the apiserver, CLI
# inputs, validate against the apiserver, serve start-up failures.
HOSTILE_TESTS := tests/unit/test_hostile_pods.py tests/unit/test_hostile_inputs.py \
	tests/e2e/service/test_admission_hostile.py tests/e2e/service/test_validate_apiserver.py \
	tests/e2e/service/test_serve_startup.py
# The chart's high availability on the real node (root; the node is host-global, starts wait).
NODE_RELIABILITY_TESTS := tests/node/test_helm_ha.py
# The full run of tests/reliability, the chart's high availability on the real node, the in-process
# fuzz test and the hostile-input tests (make test runs a smaller share);
# the figures the tests collect go to .cache/reliability/figures.json and are printed, pass or fail.
reliability: $(STAMP) controlplane node-binaries
	@RELIABILITY_FULL=1 $(PY) -m pytest tests/reliability $(NODE_RELIABILITY_TESTS) tests/unit/test_fuzz_admission.py $(HOSTILE_TESTS) -q; \
		status=$$?; echo; $(PY) -m tests.reliability.figures full; exit $$status

# The admission benchmark (bench/RESULTS.md): a fresh local control plane with K = 10, 1,000, 10,000
# and 100,000 ChaosImageRegistry resources, serve pinned to CPU 1 and the load generator to CPU 0;
# at K = 10 ours and the Go reference (bench/goref, built with go into .cache/bench/go) alternately.
# Waits (up to 20 minutes) for a 1-minute load average under 0.7 first. BENCH_QUICK=1: K = 10 and
# 100, short cells, no wait, results in .cache/bench/quick (bench/ untouched).
bench: $(STAMP) controlplane
	$(PY) -m bench.service_bench $(if $(BENCH_QUICK),--quick --no-wait --out .cache/bench/quick)

# Pod start-up through the apiserver on the real node (bench/RESULTS.md, "Pod start-up on the real
# node"): 200 HCE fault pods with the webhook and 200 without, alternately; writes bench/node-results.json
# and its own part of bench/RESULTS.md. Root, like make node-test; about 8 minutes.
bench-node: $(STAMP) controlplane node-binaries
	$(PY) -m bench.node_startup

# NODE=1: with one real node (kubelet, containerd, scheduler, controller manager) and a local registry.
cluster-up: $(STAMP) controlplane $(if $(NODE),node-binaries)
	$(PY) -m controlplane up $(if $(NODE),--node)

cluster-down: $(STAMP)
	$(PY) -m controlplane down

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
