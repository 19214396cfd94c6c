#!/usr/bin/env bash
# Builds promtool (Prometheus's rule checker and rule unit-test runner) from the Go module proxy into
# the same git-ignored cache as the control plane (controlplane/build.sh), keyed by version. A warm
# cache costs nothing and needs no Go. Prints the path of the binary on the last line of stdout.
set -euo pipefail

# github.com/prometheus/prometheus publishes Prometheus 3.x as module versions v0.3xx.y.
PROMETHEUS_MODULE_VERSION="${PROMETHEUS_MODULE_VERSION:-v0.316.0}"
CACHE="${CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chaos-registry-webhook/controlplane}"
BIN="$CACHE/bin/promtool-${PROMETHEUS_MODULE_VERSION}"

fail() { echo "promtool build: $*" >&2; exit 1; }

if [[ -x "$BIN/promtool" ]]; then
  echo "$BIN/promtool"
  exit 0
fi
command -v go >/dev/null 2>&1 || fail "no Go toolchain on PATH: install Go 1.25 or newer (https://go.dev/dl) and rerun"
mkdir -p "$BIN"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/promtool.lock"
  flock 9
fi
if [[ ! -x "$BIN/promtool" ]]; then
  echo "promtool build: building promtool $PROMETHEUS_MODULE_VERSION (a few minutes on 2 cores, once)" >&2
  GOFLAGS="-buildvcs=false" CGO_ENABLED=0 GOBIN="$BIN/.tmp" \
    go install -trimpath -ldflags "-s -w" "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION" \
    || fail "go install of promtool failed (see above)"
  mv "$BIN/.tmp/promtool" "$BIN/promtool"
  rmdir "$BIN/.tmp"
fi
echo "$BIN/promtool"
