#!/usr/bin/env bash
# Builds the webhook's image from the repository's Dockerfile without a container engine and writes
# it as an OCI archive, which the real-node tier pushes into its local registry (skopeo) or imports
# into containerd. Usage: build-image.sh IMAGE_REFERENCE. Prints the archive's path on the last line.
#
# * buildah runs the Dockerfile unchanged (chroot isolation, host network, storage in a scratch
#   folder removed afterwards): the Dockerfile stays the one source of truth.
# * The Dockerfile's base (ARG PYTHON_IMAGE, the python slim image of Docker Hub) cannot be pulled
#   where only package registries are reachable. A Debian bookworm stand-in made by mmdebstrap is
#   passed instead; it carries this machine's locally added CA certificates, since pip reaches PyPI
#   through a TLS proxy on such machines.
# * The archive is cached under a key over every input (Dockerfile, .dockerignore, the files it lets
#   into the build context, the stand-in's recipe and CA certificates, the reference): a warm run
#   costs one hash of the sources.
set -euo pipefail

[[ $# -eq 1 && -n "$1" ]] || { echo "usage: $0 IMAGE_REFERENCE" >&2; exit 2; }
IMAGE="$1"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chaos-registry-webhook/image}"

fail() { echo "image build: $*" >&2; exit 1; }
log() { echo "image build: $*" >&2; }

# --- packages ----------------------------------------------------------------------------------------
PACKAGES=(buildah mmdebstrap skopeo)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
for package in "${PACKAGES[@]}"; do installed "$package" || missing+=("$package"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    why="not root"; [[ $(id -u) -eq 0 ]] && why="no apt-get"
    fail "missing Debian packages (${why}, cannot install): ${missing[*]}"
  fi
  log "installing ${missing[*]}"
  apt() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q "$@"; }
  apt update >/dev/null || true
  apt install -y --no-install-recommends "${missing[@]}" >/dev/null || fail "apt-get install ${missing[*]} failed"
fi

# --- cache key ---------------------------------------------------------------------------------------
# The stand-in's recipe: changing any of these words makes a new base.
SUITE=bookworm
BASE_PACKAGES=python3,python3-pip,python3-venv,python-is-python3,ca-certificates
LOCAL_CA_DIR=/usr/local/share/ca-certificates
BASE_KEY="$(
  {
    echo "mmdebstrap --variant=minbase $SUITE $BASE_PACKAGES; no EXTERNALLY-MANAGED; local CAs"
    [[ -d $LOCAL_CA_DIR ]] && find "$LOCAL_CA_DIR" -type f -name '*.crt' -print0 | sort -z | xargs -0r sha256sum
  } | sha256sum | cut -c1-16
)"

# The build context as .dockerignore defines it: `*`, then `!path` lines let paths in, then the
# two cache patterns (__pycache__, *.pyc) leave out what Python writes next to the sources.
cd "$REPO"
mapfile -t context_paths < <(sed -n 's|^!\(.*\)$|\1|p' .dockerignore | sed 's|/$||')
[[ ${#context_paths[@]} -gt 0 ]] || fail ".dockerignore lets no path into the build context"
KEY="$(
  {
    echo "$IMAGE" "$BASE_KEY"
    sha256sum Dockerfile .dockerignore
    find "${context_paths[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
)"
ARCHIVE="$CACHE/archives/$KEY.oci.tar"
if [[ -f $ARCHIVE ]]; then
  echo "$ARCHIVE"
  exit 0
fi

mkdir -p "$CACHE/archives" "$CACHE/base" "$CACHE/tmp"
# Two test sessions starting at once would otherwise both build the same thing.
exec 9>"$CACHE/build.lock"
if ! flock -n 9; then
  log "another image build is running; waiting for it"
  flock 9
fi
if [[ -f $ARCHIVE ]]; then
  echo "$ARCHIVE"
  exit 0
fi
started=$SECONDS

# --- the stand-in base -------------------------------------------------------------------------------
BASE_TAR="$CACHE/base/$BASE_KEY.tar"
if [[ ! -f $BASE_TAR ]]; then
  log "making the Debian $SUITE Python stand-in for the Dockerfile's base (mmdebstrap, about 30 s)"
  hooks=(--customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED')
  if compgen -G "$LOCAL_CA_DIR/*.crt" >/dev/null; then
    hooks+=(--customize-hook="copy-in $LOCAL_CA_DIR/. /usr/local/share/ca-certificates/"
            --customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1')
  fi
  mmdebstrap --quiet --format=tar --variant=minbase --include="$BASE_PACKAGES" "${hooks[@]}" \
    "$SUITE" "$BASE_TAR.tmp" >&2 || fail "mmdebstrap $SUITE failed (see above)"
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  # Older stand-ins are of no further use.
  find "$CACHE/base" -name '*.tar' ! -name "$BASE_KEY.tar" -delete
fi

# --- build -------------------------------------------------------------------------------------------
SCRATCH="$(mktemp -d "$CACHE/tmp/build.XXXXXX")"
BUILDAH=(buildah --root "$SCRATCH/root" --runroot "$SCRATCH/run" --storage-driver vfs)
cleanup() {
  "${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
  "${BUILDAH[@]}" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

STANDIN=localhost/chaos-registry-webhook/python-standin:$BASE_KEY
container="$("${BUILDAH[@]}" from --quiet scratch)"
"${BUILDAH[@]}" add --quiet "$container" "$BASE_TAR" / >/dev/null
"${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --cmd python3 "$container"
"${BUILDAH[@]}" commit --quiet --rm "$container" "$STANDIN" >/dev/null

log "building $IMAGE from Dockerfile (buildah, base $STANDIN)"
"${BUILDAH[@]}" bud --quiet --isolation chroot --pull-never --layers=false \
  --build-arg "PYTHON_IMAGE=$STANDIN" --tag "$IMAGE" --file Dockerfile . >/dev/null \
  || fail "buildah bud failed (see above)"
"${BUILDAH[@]}" push --quiet "$IMAGE" "oci-archive:$ARCHIVE.tmp:$IMAGE" >/dev/null
mv "$ARCHIVE.tmp" "$ARCHIVE"
# Keep the three newest archives (each about 120 MiB): other checkouts on the machine share the cache.
find "$CACHE/archives" -name '*.oci.tar' -printf '%T@ %p\n' | sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -f
log "built $IMAGE in $((SECONDS - started)) s: $ARCHIVE"
echo "$ARCHIVE"
