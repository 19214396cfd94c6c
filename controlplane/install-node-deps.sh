#!/usr/bin/env bash
# Installs the Debian packages the real-node test tier runs (containerd, runc, CNI plugins, the
# CNCF distribution registry, image tools, gcc for the pause binary). Skips when all are present,
# so a warm run costs a few dpkg look-ups. When it cannot install (not root, no apt-get) it says in
# one line what is missing and exits 1.
set -euo pipefail

PACKAGES=(
  containerd runc containernetworking-plugins busybox-static docker-registry umoci skopeo
  apache2-utils socat gcc libc6-dev iproute2 util-linux
)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for package in "${PACKAGES[@]}"; do
  installed "$package" || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  why="not root"; [[ $(id -u) -eq 0 ]] && why="no apt-get"
  echo "node tier: missing Debian packages (${why}, cannot install): ${missing[*]}" >&2
  exit 1
fi

echo "node tier: installing ${missing[*]}" >&2
# Other people on the machine may run apt at the same time: wait for their lock, do not fail.
apt() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q "$@"; }
apt update >/dev/null || true
apt install -y --no-install-recommends "${missing[@]}" >/dev/null
