# syntax=docker/dockerfile:1
# chaos-registry-webhook: `make image` builds ghcr.io/chaos-registry-webhook/chaos-registry-webhook:0.1.0,
# the image the Helm chart runs by default.
#
# Stage 1 builds the project's wheel and the wheels of its dependencies; stage 2 installs those
# wheels only (no compiler, no source tree, no network) and runs as the non-root user 65532.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook
RUN python -m pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Only wheels, from the build stage, never from an index; pip's own build helpers go afterwards.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels /wheels/chaos_registry_webhook-*.whl \
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
