#!/usr/bin/env bash
# Builds etcdutl (etcd's offline snapshot restore) from the Go module proxy into the same git-ignored
# cache as the control plane (controlplane/build.sh), at the etcd version the control plane runs.
# A warm cache costs nothing and needs no Go. Prints the path of the binary on the last line.
set -euo pipefail

ETCD_VERSION="${ETCD_VERSION:-v3.6.5}"        # keep in step with controlplane/build.sh
CACHE="${CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chaos-registry-webhook/controlplane}"
BIN="$CACHE/bin/etcdutl-${ETCD_VERSION}"

fail() { echo "etcdutl build: $*" >&2; exit 1; }

if [[ -x "$BIN/etcdutl" ]]; then
  echo "$BIN/etcdutl"
  exit 0
fi
command -v go >/dev/null 2>&1 || fail "no Go toolchain on PATH: install Go 1.25 or newer (https://go.dev/dl) and rerun"
mkdir -p "$BIN" "$CACHE/work/etcdutl-$ETCD_VERSION"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/etcdutl.lock"
  flock 9
fi
if [[ ! -x "$BIN/etcdutl" ]]; then
  cd "$CACHE/work/etcdutl-$ETCD_VERSION"
  if [[ ! -f go.mod ]]; then
    # etcd's own modules replace each other with local folders; point them at the published versions.
    cat > go.mod <<MOD
module local/etcdutl-build

go 1.25.0

require go.etcd.io/etcd/etcdutl/v3 $ETCD_VERSION
MOD
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/etcdutl/v3"
GO
    for mod in go.etcd.io/etcd/api/v3 go.etcd.io/etcd/client/pkg/v3 go.etcd.io/etcd/client/v3 go.etcd.io/etcd/pkg/v3 go.etcd.io/etcd/server/v3; do
      echo "replace $mod => $mod $ETCD_VERSION" >> go.mod
    done
    GOFLAGS="-mod=mod" go mod tidy >/dev/null 2>&1 || GOFLAGS="-mod=mod" go mod download all || fail "cannot resolve etcdutl $ETCD_VERSION modules"
  fi
  echo "etcdutl build: building etcdutl $ETCD_VERSION (a minute or two, once)" >&2
  GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/etcdutl.tmp" go.etcd.io/etcd/etcdutl/v3 \
    || fail "go build of etcdutl failed (see above)"
  mv "$BIN/etcdutl.tmp" "$BIN/etcdutl"
fi
echo "$BIN/etcdutl"
