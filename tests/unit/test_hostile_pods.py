"""Nothing a pod carries may raise in the admission path, or keep its chaos images from being rewritten.

A pod author controls every field of the pod. If any value in it could make the mutation raise, the
author could force the error answer: under failurePolicy Fail the pod is refused, under Ignore it is
admitted unrewritten, a way to opt out of the organisation's registry. So, for every field the core
reads (annotations, labels, names, container names, images, env, pull secrets, the container lists),
Hypothesis puts hostile values there (deeply nested JSON text, huge strings, control characters,
values of every JSON type, forged records) in a chaos pod whose one anchor container carries a
catalog image, and checks:

* `Snapshot.admit` never raises;
* the pod is still a chaos pod and the anchor's image is rewritten exactly as in the clean pod;
* the patch applies, and every warning is one line.

The end-to-end twin, through the apiserver under both failure policies, is
tests/e2e/service/test_admission_hostile.py. Figures go to RELIABILITY.md (`make reliability`).
"""

from __future__ import annotations

import copy
import json
import resource
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability import figures
from tests.reliability.scale import current_scale
from webhook.core.jsonpatch import apply_patch
from webhook.core.loader import load_config
from webhook.core.models import ORIGINAL_IMAGES_ANNOTATION, SCOPE_ANNOTATION
from webhook.core.snapshot import Snapshot

SCALE = current_scale()
SECTION = "hostile pods in-process (Snapshot.admit)"
NAMESPACE = "retail-chaos"  # examples/config: a Private registry, so the pull-secret path runs too
ANCHOR = "litmuschaos/chaos-runner:3.11.0"
SNAPSHOT: Snapshot = load_config(["examples/config"]).snapshot()
slowest: dict[str, float] = {"seconds": 0.0}


def base_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "runner",
            "labels": {"app.kubernetes.io/component": "chaos-runner"},
            "annotations": {},
        },
        "spec": {
            "containers": [
                {
                    "name": "chaos-runner",
                    "image": ANCHOR,
                    "env": [{"name": "LIB_IMAGE", "value": "litmuschaos/go-runner:3.11.0"}],
                }
            ],
        },
    }


def _expected_anchor() -> str:
    pod = base_pod()
    mutation = SNAPSHOT.admit(pod, NAMESPACE)
    image: str = apply_patch(pod, mutation.patch)["spec"]["containers"][0]["image"]
    assert image != ANCHOR
    return image


EXPECTED_ANCHOR = _expected_anchor()


def _nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return '{"chaos-runner":' + "[" * depth + "]" * depth + "}"


depths = st.sampled_from([999, 1000, 1001, 5000, 100_000]) | st.integers(1, 100_000)
nested_json = st.builds(_nested, depths, st.sampled_from(["list", "object", "inside"]))
huge_text = st.builds(
    lambda n, c: c * n, st.integers(1, 300_000), st.sampled_from(["a", "[", "\n", "\u202e"])
)
forged_records = st.sampled_from(
    [
        json.dumps({"chaos-runner": ANCHOR}),
        json.dumps({"chaos-runner": EXPECTED_ANCHOR}),
        json.dumps({"chaos-runner": "litmuschaos/chaos-runner:3.11.0", "chaos-runner/env/LIB_IMAGE": 1}),
        json.dumps({"chaos-runner": ""}),
        json.dumps({"chaos-runner": "not an image!"}),
        "9" * 5000,
        "1e99999",
        "NaN",
        '"\\ud800"',
        "null",
        "[]",
        "{" * 10,
    ]
)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
hostile_text = st.text() | nested_json | huge_text | forged_records
hostile = hostile_text | json_values

Edit = Callable[[dict[str, Any]], None]


def _walk(pod: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    """The value at `path`, or None when an earlier edit replaced something on the way."""
    target: Any = pod
    for key in path:
        in_dict = isinstance(target, dict) and isinstance(key, str) and key in target
        in_list = isinstance(target, list) and isinstance(key, int) and key < len(target)
        if in_dict or in_list:
            target = target[key]
        else:
            return None
    return target


def _set(path: tuple[str | int, ...], value: Any) -> Edit:
    def edit(pod: dict[str, Any]) -> None:
        target = _walk(pod, path[:-1])
        if isinstance(target, dict):
            target[path[-1]] = value

    return edit


def _append(path: tuple[str | int, ...], value: Any) -> Edit:
    def edit(pod: dict[str, Any]) -> None:
        target = _walk(pod, path)
        if isinstance(target, list):
            target.append(value)

    return edit


ANNOTATIONS = ("metadata", "annotations")
ANCHOR_CONTAINER = ("spec", "containers", 0)
# Every field the core reads, except the chaos label itself and `chaosregistry.io/inject`, which
# decide (by design) whether the pod is a chaos pod at all.
FIELD_EDITS: dict[str, Callable[[Any], Edit]] = {
    "annotation original-images": lambda v: _set((*ANNOTATIONS, ORIGINAL_IMAGES_ANNOTATION), v),
    "annotation scope": lambda v: _set((*ANNOTATIONS, SCOPE_ANNOTATION), v),
    "annotations object": lambda v: _set(("metadata", "annotations"), v),
    "other annotation": lambda v: _set((*ANNOTATIONS, "x/hostile"), v),
    "other label": lambda v: _set(("metadata", "labels", "x/hostile"), v),
    "metadata.name": lambda v: _set(("metadata", "name"), v),
    "metadata.generateName": lambda v: _set(("metadata", "generateName"), v),
    "anchor container name": lambda v: _set((*ANCHOR_CONTAINER, "name"), v),
    "anchor env list": lambda v: _set((*ANCHOR_CONTAINER, "env"), v),
    "anchor env entry": lambda v: _append((*ANCHOR_CONTAINER, "env"), v),
    "anchor env name": lambda v: _append((*ANCHOR_CONTAINER, "env"), {"name": v, "value": ANCHOR}),
    "anchor env value": lambda v: _append((*ANCHOR_CONTAINER, "env"), {"name": "LIB_IMAGE", "value": v}),
    "other container": lambda v: _append(("spec", "containers"), v),
    "other container image": lambda v: _append(("spec", "containers"), {"name": "x", "image": v}),
    "other container name": lambda v: _append(("spec", "containers"), {"name": v, "image": ANCHOR}),
    "initContainers": lambda v: _set(("spec", "initContainers"), v),
    "ephemeralContainers": lambda v: _set(("spec", "ephemeralContainers"), v),
    "imagePullSecrets": lambda v: _set(("spec", "imagePullSecrets"), v),
}

EXAMPLES = settings(
    max_examples=SCALE.pick(40, 1000),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


def check(pod: dict[str, Any], fields: list[str]) -> None:
    original = copy.deepcopy(pod)
    started = time.perf_counter()
    mutation = SNAPSHOT.admit(pod, NAMESPACE)
    elapsed = time.perf_counter() - started
    if elapsed > slowest["seconds"]:
        slowest["seconds"] = elapsed
        figures.record(SECTION, "slowest case seconds", round(elapsed, 4))
        figures.record(SECTION, "slowest case fields", ", ".join(fields))
    figures.add(SECTION, "inputs_tried", 1)
    for field in fields:
        figures.add(SECTION, f"inputs in {field}", 1)
    figures.record(SECTION, "tracebacks", 0)
    peak_mib = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    figures.record(SECTION, "peak RSS MiB (test process)", peak_mib)
    assert pod == original, "the mutation must not change the pod it reads"
    assert mutation.chaos, mutation.reason
    patched = apply_patch(pod, mutation.patch)
    assert patched["spec"]["containers"][0]["image"] == EXPECTED_ANCHOR, (fields, mutation.warnings)
    for warning in mutation.warnings:
        assert "\n" not in warning and "\r" not in warning


@pytest.mark.parametrize("field", sorted(FIELD_EDITS))
@EXAMPLES
@given(value=hostile)
def test_one_hostile_field_never_raises_and_the_pod_is_still_rewritten(field: str, value: Any) -> None:
    pod = base_pod()
    FIELD_EDITS[field](value)(pod)
    check(pod, [field])


@EXAMPLES
@given(edits=st.lists(st.tuples(st.sampled_from(sorted(FIELD_EDITS)), hostile), min_size=2, max_size=6))
def test_many_hostile_fields_together(edits: list[tuple[str, Any]]) -> None:
    pod = base_pod()
    for field, value in edits:
        FIELD_EDITS[field](value)(pod)
    check(pod, [field for field, _ in edits])


def test_a_thousand_brackets_in_the_record_are_ignored_with_a_warning() -> None:
    """The reported case: RecursionError from json.loads reached the handler's error answer."""
    pod = base_pod()
    pod["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION] = "[" * 1000 + "]" * 1000
    mutation = SNAPSHOT.admit(pod, NAMESPACE)
    assert apply_patch(pod, mutation.patch)["spec"]["containers"][0]["image"] == EXPECTED_ANCHOR
    assert any(ORIGINAL_IMAGES_ANNOTATION in warning for warning in mutation.warnings)
    figures.add(SECTION, "inputs_tried", 1)
