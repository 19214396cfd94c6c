"""Fuzzing the admission handler in-process: AdmissionHandler.handle with generated bad input.

Reviews, pods, images and ChaosImageRegistry documents come from tests/reliability/fuzz.py (valid
and malformed JSON, wrong kinds, missing fields, odd types at every level, huge pods). Properties:

* `handle` never raises and never answers with the internal-error response;
* malformed reviews get 400 with a message, well-formed ones 200 with the request's uid;
* a pod is refused only when its namespace is unknown (the failure policy's answer);
* every patch applies to the pod with webhook.core.jsonpatch.apply_patch, touches only images,
  image env values, pull secrets and the two annotations, and is idempotent: the patched pod sent
  again gets no patch (what the apiserver's reinvocation does).

Hypothesis drives the shrinking tests; a seeded loop adds volume (100,000 inputs under
`make reliability`, RELIABILITY_FULL=1; a few thousand in `make test`).
"""

from __future__ import annotations

import base64
import collections
import logging
import re
import time
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability import figures, fuzz
from tests.reliability.scale import current_scale
from webhook.core.jsonpatch import apply_patch
from webhook.core.models import DefaultsConfig, Scope, load_defaults
from webhook.service import state as state_module
from webhook.service.admission.decision import MAX_WARNING_LENGTH
from webhook.service.admission.handler import AdmissionHandler
from webhook.service.state import ConfigState

SCALE = current_scale()
UNIVERSE = fuzz.Universe.build()
SECTION = "fuzz in-process (AdmissionHandler.handle)"
EXAMPLES = settings(
    max_examples=SCALE.pick(150, 5000),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
# Where a patch may write: images, env values, pull secrets, the two annotations.
PATCH_PATH = re.compile(
    r"^/spec/(initContainers|containers|ephemeralContainers)/\d+/(image|env/\d+/value)$"
    r"|^/spec/imagePullSecrets(/-)?$"
    r"|^/metadata(/annotations(/chaosregistry.io~1(original-images|scope))?)?$"
)

counts: collections.Counter[str] = collections.Counter()


def run(coroutine: Coroutine[Any, Any, tuple[int, bytes]]) -> tuple[int, bytes]:
    """Drive `handle()` to completion without an event loop: with no namespace wait it never suspends."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        result: tuple[int, bytes] = stop.value
        return result
    coroutine.close()
    raise AssertionError("AdmissionHandler.handle suspended without a namespace wait")


def build_state(config: fuzz.Config) -> ConfigState:
    """What the watches would build from these objects (invalid registries are ignored with problems)."""
    state = ConfigState()
    for document in config.registries:
        state.upsert_registry(document)
    for name, labels in UNIVERSE.namespaces.items():
        state.upsert_namespace(name, labels)
    state.set_defaults(config.defaults)
    state.rebuild()
    return state


def check(handler: AdmissionHandler, case: fuzz.ReviewCase) -> str:
    """Send one case through `handler` and check every property; returns the outcome's name."""
    status, body = run(handler.handle(case.body))
    if not case.well_formed:
        assert status == 400, f"{case.what}: expected 400, got {status}: {body[:300]!r}"
        error = orjson.loads(body)["error"]
        assert isinstance(error, str) and error
        return "malformed: 400"
    assert status == 200, f"well-formed review answered {status}: {body[:300]!r}"
    answer = orjson.loads(body)
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == case.uid
    warnings = response.get("warnings", [])
    assert isinstance(warnings, list)
    for warning in warnings:
        assert isinstance(warning, str) and 0 < len(warning) <= MAX_WARNING_LENGTH, warning
        assert "internal error" not in warning, warning
    if case.handled and case.namespace not in UNIVERSE.namespaces:
        if handler.failure_policy == "Fail":
            assert (
                response["allowed"] is False and "not in the webhook's cache" in response["status"]["message"]
            )
        else:
            assert response["allowed"] is True and "patch" not in response
        return "unknown namespace: failure policy"
    assert response["allowed"] is True, f"pod refused: {response}"
    if "patch" not in response:
        assert "patchType" not in response
        return "admitted, no patch"
    assert case.handled, f"operation {case.operation}/{case.sub_resource} got a patch"
    assert response["patchType"] == "JSONPatch"
    patch = orjson.loads(base64.b64decode(response["patch"], validate=True))
    assert isinstance(patch, list) and patch, patch
    for operation in patch:
        assert PATCH_PATH.match(operation["path"]), f"patch writes outside its fields: {operation}"
    patched = apply_patch(case.pod, patch)  # PatchError fails the test
    status, body = run(handler.handle(fuzz.resubmission(case, patched)))
    again = orjson.loads(body)["response"]
    assert status == 200 and again["allowed"] is True, again
    assert "patch" not in again, (
        f"not idempotent: the patched pod got another patch {orjson.loads(base64.b64decode(again['patch']))}"
        f" after {patch}"
    )
    return "patched, idempotent"


class _FormattingHandler(logging.Handler):
    """Formats every record (as a real log handler would) and drops it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


@contextmanager
def debug_logging() -> Iterator[None]:
    """The serve process's --log-level debug: one formatted line per admission."""
    logger = logging.getLogger("webhook")
    handler = _FormattingHandler()
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


@contextmanager
def quiet_logging() -> Iterator[None]:
    """Malformed requests log a warning each: keep 100,000 of them out of pytest's capture."""
    logger = logging.getLogger("webhook")
    saved = logger.propagate
    handler = logging.NullHandler()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


def _count(outcome: str) -> None:
    counts[outcome] += 1
    figures.add(SECTION, "inputs_tried", 1)


_BUILTIN_DEFAULTS = load_defaults()


def _cached_load_defaults(override: Mapping[str, Any] | None = None) -> DefaultsConfig:
    return _BUILTIN_DEFAULTS if not override else load_defaults(override)


@pytest.fixture(autouse=True, scope="module")
def _fast_and_counted() -> Iterator[None]:
    """Built-in defaults parsed once (ConfigState parses them per instance: 7 ms); figures at the end."""
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(state_module, "load_defaults", _cached_load_defaults)
        yield
    for outcome, number in sorted(counts.items()):
        figures.record(SECTION, outcome, number)
    figures.record(SECTION, "seconds", round(time.monotonic() - started, 1))


POLICIES = st.sampled_from(("Fail", "Ignore"))


@EXAMPLES
@given(fuzz.strategy(fuzz.config, UNIVERSE), fuzz.strategy(fuzz.review, UNIVERSE), POLICIES)
def test_generated_reviews_are_answered_by_the_contract(
    config: fuzz.Config, case: fuzz.ReviewCase, policy: str
) -> None:
    with quiet_logging():
        handler = AdmissionHandler(build_state(config).current, policy)
        _count(check(handler, case))


@EXAMPLES
@given(fuzz.strategy(fuzz.config, UNIVERSE), fuzz.strategy(fuzz.review, UNIVERSE, malformed_share=0.1))
def test_debug_logging_survives_odd_pods(config: fuzz.Config, case: fuzz.ReviewCase) -> None:
    """`serve --log-level debug` formats a line per admission from the pod's metadata, whatever it holds."""
    with debug_logging():
        handler = AdmissionHandler(build_state(config).current, "Fail")
        _count(check(handler, case))


@EXAMPLES
@given(
    fuzz.strategy(fuzz.config, UNIVERSE, valid=True),
    fuzz.strategy(fuzz.review, UNIVERSE, malformed_share=0.0, huge=0.0),
)
def test_valid_configurations_rewrite_chaos_pods(config: fuzz.Config, case: fuzz.ReviewCase) -> None:
    """Only valid registries (none ignored): the most patches, so the most patch properties checked."""
    with quiet_logging():
        state = build_state(config)
    assert all(not obj.problems for obj in state.objects.values()), [
        o.problems for o in state.objects.values()
    ]
    handler = AdmissionHandler(state.current, "Fail")
    with quiet_logging():
        _count(check(handler, case))


@settings(EXAMPLES, max_examples=SCALE.pick(20, 300))
@given(
    fuzz.strategy(fuzz.config, UNIVERSE, valid=True),
    fuzz.strategy(fuzz.review, UNIVERSE, malformed_share=0, huge=1.0),
)
def test_huge_pods(config: fuzz.Config, case: fuzz.ReviewCase) -> None:
    """200 containers, or 1 MiB of env: answered, patched and idempotent like any pod."""
    with quiet_logging():
        handler = AdmissionHandler(build_state(config).current, "Fail")
        _count("huge: " + check(handler, case))


@EXAMPLES
@given(fuzz.strategy(fuzz.config, UNIVERSE, max_registries=12))
def test_registry_documents_never_break_the_state(config: fuzz.Config) -> None:
    """Any ChaosImageRegistry document (valid or not) is taken in or ignored with named problems."""
    with quiet_logging():
        state = build_state(config)
    assert state.snapshot is not None
    for document in config.registries:
        obj = state.objects[document["metadata"]["name"]]
        assert all(isinstance(problem, str) and problem for problem in obj.problems)
    for scope in UNIVERSE.scopes():
        state.snapshot.config.effective(Scope(scope))
    _count("registry configurations")


def test_seeded_bulk() -> None:
    """The volume: a seeded generator loop, a fresh configuration every 500 inputs."""
    total = SCALE.pick(3000, 100_000)
    source = fuzz.RandomSource(f"fuzz-admission-{total}")
    handler: AdmissionHandler | None = None
    started = time.monotonic()
    with quiet_logging():
        for index in range(total):
            if index % 500 == 0:
                policy = "Fail" if index % 1000 == 0 else "Ignore"
                handler = AdmissionHandler(build_state(fuzz.config(source, UNIVERSE)).current, policy)
            assert handler is not None
            case = fuzz.review(source, UNIVERSE)
            try:
                outcome = check(handler, case)
            except AssertionError as error:
                raise AssertionError(
                    f"input {index} of seed fuzz-admission-{total} ({case.what}): {error}"
                ) from error
            _count(outcome)
    figures.record(SECTION, "seeded loop inputs per second", round(total / (time.monotonic() - started)))
