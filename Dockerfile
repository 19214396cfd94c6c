# syntax=docker/dockerfile:1
# chaos-registry-webhook: `make image` builds ghcr.io/chaos-registry-webhook/chaos-registry-webhook:0.1.0,
# the image the Helm chart runs by default.
#
# Stage 1 downloads the locked dependencies (every one pinned to a version and its sha256 in
# requirements.lock, `make lock` writes it) and builds the project's wheel with locked build tools;
# stage 2 installs those wheels only, hash-checked again (no compiler, no source tree, no network)
# and runs as the non-root user 65532. A download whose hash differs from the lock fails the build.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY requirements.lock build-requirements.lock ./
# Wheels only (no sdist builds, whose build dependencies no lock could pin), each hash-checked.
RUN python -m pip download --require-hashes --only-binary=:all: --dest /wheels -r requirements.lock \
    && python -m pip install --require-hashes -r build-requirements.lock \
    && cp requirements.lock /wheels/
COPY pyproject.toml README.md ./
COPY webhook ./webhook
# The project itself: built with the locked setuptools and wheel just installed, and --no-deps, so
# its dependencies come only from the lock above.
RUN python -m pip wheel --no-build-isolation --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Only wheels, from the build stage, never from an index: first the locked dependencies (hashes
# checked against the lock), then the project's wheel without dependencies; pip's own build helpers
# go afterwards.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels --require-hashes -r /wheels/requirements.lock \
    && python -m pip install --no-index --no-deps /wheels/chaos_registry_webhook-*.whl \
    && python -m pip check \
    && python -m pip uninstall --yes setuptools wheel \
    && chaos-registry serve --help > /dev/null \
    && python -c "import webhook.service.operator"
LABEL org.opencontainers.image.title="chaos-registry-webhook" \
      org.opencontainers.image.description="Mutating admission webhook: chaos-experiment pods pull from the registry their organisation chose" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
# 8443: HTTPS admission server; 8080: /healthz, /readyz, /metrics.
EXPOSE 8443 8080
ENTRYPOINT ["chaos-registry", "serve"]
