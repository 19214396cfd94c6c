#!/usr/bin/env bash
# Builds the pinned control-plane binaries (kube-apiserver, kubectl, etcd, helm) from the Go module
# proxy into a git-ignored cache keyed by version. Skips whatever is already built, so a warm run
# costs seconds. Prints the bin folder on the last line of stdout.
#
#   bash controlplane/build.sh          kube-apiserver, kubectl, etcd, helm
#   bash controlplane/build.sh node     ... plus kubelet, kube-scheduler, kube-controller-manager
#   bash controlplane/build.sh argo     ... plus Argo's workflow-controller and argoexec in
#                                       <bin folder>/argo-$ARGO_VERSION/ (minutes more, once)
set -euo pipefail

KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.5}"        # the etcd that Kubernetes ${KUBERNETES_VERSION} pins
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
ARGO_VERSION="${ARGO_VERSION:-v3.7.2}"

WANT_NODE=0
WANT_ARGO=0
for component in "$@"; do
  case "$component" in
    node) WANT_NODE=1 ;;
    argo) WANT_ARGO=1 ;;
    *) echo "controlplane build: unknown component '$component' (known: node, argo)" >&2; exit 2 ;;
  esac
done
NODE_BINARIES=(kubelet kube-scheduler kube-controller-manager)

# Outside the checkout, so every clone on this machine (CI clones afresh) reuses one build.
CACHE="${CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chaos-registry-webhook/controlplane}"
BIN="$CACHE/bin/k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}"

fail() { echo "controlplane build: $*" >&2; exit 1; }
log() { echo "controlplane build: $*" >&2; }

# A warm cache needs no Go toolchain at all: CI and people without Go can reuse built binaries.
all_built() {
  local b
  for b in kube-apiserver kubectl etcd helm; do [[ -x "$BIN/$b" ]] || return 1; done
  if [[ $WANT_NODE == 1 ]]; then
    for b in "${NODE_BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
  fi
  if [[ $WANT_ARGO == 1 ]]; then
    for b in workflow-controller argoexec; do [[ -x "$BIN/argo-$ARGO_VERSION/$b" ]] || return 1; done
  fi
  return 0
}
if all_built; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null 2>&1 || fail "no Go toolchain on PATH: install Go 1.25 or newer (https://go.dev/dl) and rerun"

mkdir -p "$BIN" "$CACHE/work"
# Two test sessions starting at once would otherwise both spend minutes compiling the same thing.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/build.lock"
  if ! flock -n 9; then
    log "another build is running; waiting for it"
    flock 9
  fi
fi
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

build_kubernetes() {
  local work="$CACHE/work/kubernetes-$KUBERNETES_VERSION"
  mkdir -p "$work"
  local minor="v0.${KUBERNETES_VERSION#v1.}"
  (
    cd "$work"
    if [[ ! -f go.mod ]]; then
      cat > go.mod <<MOD
module local/kubernetes-build

go 1.25.0

require k8s.io/kubernetes $KUBERNETES_VERSION
MOD
      cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
      go mod download "k8s.io/kubernetes@$KUBERNETES_VERSION" || fail "cannot download k8s.io/kubernetes@$KUBERNETES_VERSION from the Go module proxy"
      local gomod
      gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod"
      # k8s.io/kubernetes replaces its staging modules with local folders; point them at the
      # published module versions instead.
      grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' | sort -u | while read -r mod; do
        echo "replace $mod => $mod $minor" >> go.mod
      done
      go mod tidy >/dev/null 2>&1 || go mod download all || fail "cannot resolve the Kubernetes $KUBERNETES_VERSION modules"
    fi
    local pkg=k8s.io/component-base/version
    local ldflags="-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2) -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    for cmd in kube-apiserver kubectl; do
      if [[ ! -x "$BIN/$cmd" ]]; then
        log "building $cmd $KUBERNETES_VERSION (several minutes on 2 cores, once)"
        go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" || fail "go build of $cmd failed (see above)"
        mv "$BIN/$cmd.tmp" "$BIN/$cmd"
      fi
    done
  )
}

build_etcd() {
  [[ -x "$BIN/etcd" ]] && return 0
  local work="$CACHE/work/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  (
    cd "$work"
    if [[ ! -f go.mod ]]; then
      cat > go.mod <<MOD
module local/etcd-build

go 1.25.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
      cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
      for mod in go.etcd.io/etcd/api/v3 go.etcd.io/etcd/client/pkg/v3 go.etcd.io/etcd/client/v3 go.etcd.io/etcd/pkg/v3; do
        echo "replace $mod => $mod $ETCD_VERSION" >> go.mod
      done
      go mod tidy >/dev/null 2>&1 || go mod download all || fail "cannot resolve etcd $ETCD_VERSION modules"
    fi
    log "building etcd $ETCD_VERSION"
    go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3 || fail "go build of etcd failed (see above)"
    mv "$BIN/etcd.tmp" "$BIN/etcd"
  )
}

build_helm() {
  [[ -x "$BIN/helm" ]] && return 0
  log "building helm $HELM_VERSION"
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" || fail "go install of helm failed (see above)"
}

# The node's binaries come from a second wrapper module next to the apiserver's: it starts from
# the apiserver's resolved go.mod/go.sum (same versions, warm Go cache) and adds three commands.
build_node() {
  local missing=() cmd
  for cmd in "${NODE_BINARIES[@]}"; do [[ -x "$BIN/$cmd" ]] || missing+=("$cmd"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local work="$CACHE/work/kubernetes-node-$KUBERNETES_VERSION"
  mkdir -p "$work"
  (
    cd "$work"
    if [[ ! -f tools.go ]]; then
      cp "$CACHE/work/kubernetes-$KUBERNETES_VERSION/go.mod" "$CACHE/work/kubernetes-$KUBERNETES_VERSION/go.sum" .
      {
        printf '//go:build tools\n\npackage tools\n\nimport (\n'
        for cmd in "${NODE_BINARIES[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd"; done
        printf ')\n'
      } > tools.go.tmp
      mv tools.go.tmp tools.go
      go mod tidy >/dev/null 2>&1 || { rm -f tools.go; fail "cannot resolve the modules of the Kubernetes $KUBERNETES_VERSION node binaries"; }
    fi
    local pkg=k8s.io/component-base/version
    local ldflags="-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2) -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    for cmd in "${missing[@]}"; do
      log "building $cmd $KUBERNETES_VERSION (minutes on 2 cores, once)"
      go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" || fail "go build of $cmd failed (see above)"
      mv "$BIN/$cmd.tmp" "$BIN/$cmd"
    done
  )
}

# Argo Workflows' controller and executor, as LitmusChaos runs them (about 6 minutes cold).
build_argo() {
  local out="$BIN/argo-$ARGO_VERSION"
  [[ -x "$out/workflow-controller" && -x "$out/argoexec" ]] && return 0
  local work="$CACHE/work/argo-$ARGO_VERSION" module=github.com/argoproj/argo-workflows/v3
  mkdir -p "$work" "$out"
  (
    cd "$work"
    if [[ ! -f tools.go ]]; then
      # The replace is Argo's own go.mod's (replace directives of a dependency are not inherited).
      cat > go.mod <<MOD
module local/argo-build

go 1.25.0

require $module $ARGO_VERSION

replace github.com/olekukonko/tablewriter => github.com/olekukonko/tablewriter v0.0.5
MOD
      printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "%s/cmd/workflow-controller"\n\t_ "%s/cmd/argoexec"\n)\n' "$module" "$module" > tools.go.tmp
      mv tools.go.tmp tools.go
      go mod tidy >/dev/null 2>&1 || { rm -f tools.go; fail "cannot resolve $module@$ARGO_VERSION from the Go module proxy"; }
    fi
    local ldflags="-s -w -X github.com/argoproj/argo-workflows/v3.version=$ARGO_VERSION"
    if [[ ! -x "$out/workflow-controller" ]]; then
      log "building Argo workflow-controller $ARGO_VERSION (minutes on 2 cores, once)"
      go build -trimpath -ldflags "$ldflags" -o "$out/workflow-controller.tmp" "$module/cmd/workflow-controller" \
        || fail "go build of Argo workflow-controller failed (see above)"
      mv "$out/workflow-controller.tmp" "$out/workflow-controller"
    fi
    if [[ ! -x "$out/argoexec" ]]; then
      # Module zips leave out symlinks, and Argo's workflow/executor/osspecific/signal_linux.go is
      # one (to signal_darwin.go): argoexec builds from a copy of the module with the link back.
      local src="$work/argo-src"
      if [[ ! -f "$src/go.mod" ]]; then
        rm -rf "$src" "$src.tmp"
        cp -r "$(go env GOMODCACHE)/$module@$ARGO_VERSION" "$src.tmp"
        chmod -R u+w "$src.tmp"
        ln -sf signal_darwin.go "$src.tmp/workflow/executor/osspecific/signal_linux.go"
        mv "$src.tmp" "$src"
      fi
      log "building Argo argoexec $ARGO_VERSION (minutes on 2 cores, once)"
      (cd "$src" && go build -trimpath -ldflags "$ldflags" -o "$out/argoexec.tmp" ./cmd/argoexec) \
        || fail "go build of Argo argoexec failed (see above)"
      mv "$out/argoexec.tmp" "$out/argoexec"
    fi
  )
}

build_etcd
build_helm
build_kubernetes
[[ $WANT_NODE == 1 ]] && build_node
[[ $WANT_ARGO == 1 ]] && build_argo
echo "$BIN"
