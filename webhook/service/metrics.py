"""Prometheus metrics of the webhook, on a registry of its own (served at /metrics)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "chaos_registry_admission_requests",
    "Admission requests by outcome: mutated, unchanged, skipped (not a chaos pod or opted out), ignored "
    "(operation not handled), bad_request, not_ready, namespace_unknown, error.",
    ["outcome"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "chaos_registry_admission_duration_seconds",
    "Time to answer one admission request, from the body read to the response built.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
REWRITES = Counter(
    "chaos_registry_image_rewrites",
    "Images rewritten (container images and image env vars), by catalog component.",
    ["component"],
    registry=REGISTRY,
)
CONFIG_OBJECTS = Gauge(
    "chaos_registry_config_objects",
    "Objects in the webhook's caches, by kind.",
    ["kind"],
    registry=REGISTRY,
)
BLOCKED_RESOURCES = Gauge(
    "chaos_registry_blocked_resources",
    "ChaosImageRegistry resources blocked by a higher scope with allowOverrides false.",
    registry=REGISTRY,
)
CONFLICTING_RESOURCES = Gauge(
    "chaos_registry_conflicting_resources",
    "ChaosImageRegistry resources ignored because an older one has the same scope.",
    registry=REGISTRY,
)
SNAPSHOT_BUILDS = Counter(
    "chaos_registry_snapshot_builds",
    "Configuration snapshots built from watched objects.",
    registry=REGISTRY,
)
LEADER = Gauge(
    "chaos_registry_leader",
    "1 when this replica holds the Lease and writes status and Secret copies.",
    registry=REGISTRY,
)
CERTIFICATE_EXPIRY = Gauge(
    "chaos_registry_serving_certificate_expiry_timestamp_seconds",
    "Expiry of the serving certificate currently loaded (Unix time).",
    registry=REGISTRY,
)


# The labelled children, looked up once per label value: `labels()` costs a lock, a tuple and a dict
# lookup per call, a tenth of the CPU of an admission (bench/RESULTS.md). Both sets are bounded: the
# outcomes are fixed, the components come from the catalog.
_OUTCOMES: dict[str, Any] = {}
_COMPONENTS: dict[str | None, Any] = {}


def record_request(outcome: str, seconds: float) -> None:
    counter = _OUTCOMES.get(outcome)
    if counter is None:
        counter = _OUTCOMES[outcome] = REQUESTS.labels(outcome=outcome)
    counter.inc()
    LATENCY.observe(seconds)


def record_rewrite(component: str | None) -> None:
    """One image rewritten; `component` None (not a catalog image) counts as "other"."""
    counter = _COMPONENTS.get(component)
    if counter is None:
        counter = _COMPONENTS[component] = REWRITES.labels(component=component or "other")
    counter.inc()
