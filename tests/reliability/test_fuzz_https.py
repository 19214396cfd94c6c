"""Bad input over HTTPS against a running `chaos-registry serve`, and generated pods through the apiserver.

* Generated AdmissionReviews (tests/reliability/fuzz.py) posted straight to the admission port:
  never a 5xx (nor a dropped connection) for a well-formed review, 400 for a malformed one, every
  patch applies to its pod, and the process stays up, ready, with no internal error counted.
* Generated valid chaos pods created through the real apiserver (dry-run): none is refused because of
  the webhook's patch, and what the apiserver stores is what the core predicts for that pod.
* Generated ChaosImageRegistry documents sent to the apiserver: whatever the CRD lets through, the
  webhook takes in (or ignores with a reason) and keeps admitting.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import orjson
import pytest

from controlplane import ControlPlane
from tests.e2e.service.conftest import GROUP, PLURAL, VERSION, images, wait_for
from tests.reliability import figures, fuzz
from tests.reliability.scale import Scale
from tests.reliability.support import ManagedWebhook, metric_total, new_api, post_reviews, running_webhook
from webhook.core.jsonpatch import apply_patch
from webhook.core.loader import parse_registry
from webhook.core.models import ChaosImageRegistry, load_defaults
from webhook.core.resolver import RegistryEntry
from webhook.core.snapshot import CompiledConfig, Snapshot
from webhook.service.admission.server import MAX_REQUEST_BYTES

SECTION_HTTPS = "fuzz over HTTPS (serve process)"
SECTION_PODS = "generated pods through the apiserver (dry-run)"
SECTION_CIR = "generated ChaosImageRegistry documents through the apiserver"
# The CRD bounds a custom image at 512 characters and checks its grammar, but not the 255-character
# limit of the repository name after normalisation (docker.io/library/ added), which the webhook
# enforces: such a resource is accepted by the apiserver, then ignored by the webhook with the reason
# in its log. Reported to the CRD's owner; counted, not failed, until the CRD checks it.
KNOWN_GAP = "repository name must not be more than 255 characters"


@dataclass
class World:
    """A universe of namespaces and registries in the cluster, and a webhook serving it."""

    universe: fuzz.Universe
    webhook: ManagedWebhook
    registries: list[dict[str, Any]]
    control_namespace: str
    api: kubernetes.client.ApiClient
    created_registries: list[str] = field(default_factory=list)

    def snapshot(self) -> Snapshot:
        """The core's view of this world: what the webhook should be doing."""
        entries = [
            RegistryEntry.from_resource(ChaosImageRegistry.model_validate(doc)) for doc in self.registries
        ]
        return Snapshot(CompiledConfig(load_defaults(), entries), dict(self.universe.namespaces))


@pytest.fixture(scope="module")
def world(control_plane: ControlPlane, crd: None, log_dir: Path) -> Iterator[World]:
    prefix = f"f{secrets.token_hex(3)}-"
    universe = fuzz.Universe.build(prefix)
    api = new_api(control_plane)
    core = kubernetes.client.CoreV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    control_namespace = f"{prefix}unselected"
    namespaces = [*universe.namespaces, control_namespace]
    for name in universe.namespaces:
        core.create_namespace({"metadata": {"name": name, "labels": dict(universe.namespaces[name])}})
    core.create_namespace({"metadata": {"name": control_namespace}})  # no account label: not selected
    source = fuzz.RandomSource("https-world")
    stored: list[dict[str, Any]] = []
    names: list[str] = []
    # Every account covered (most pods get a patch), then random valid registries at every level.
    documents = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ChaosImageRegistry",
            "spec": {"scope": {"account": account}, "registry": {"server": universe.servers[index]}},
        }
        for index, account in enumerate(universe.accounts)
    ]
    documents += fuzz.config(source, universe, max_registries=10, valid=True).registries
    for index, document in enumerate(documents):
        document["metadata"] = {"name": f"{prefix}r{index}"}
        stored.append(custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, document))
        names.append(document["metadata"]["name"])
    try:
        with running_webhook(control_plane, log_dir, log_level="debug") as webhook:
            world = World(universe, webhook, stored, control_namespace, api, names)
            yield world
            assert webhook.alive(), f"the webhook died:\n{webhook.log_text()[-3000:]}"
    finally:
        for name in names:
            with contextlib.suppress(kubernetes.client.ApiException):
                custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        for name in namespaces:
            with contextlib.suppress(kubernetes.client.ApiException):
                core.delete_namespace(name)
        api.close()


def _wait_synced(world: World) -> None:
    """The webhook knows every namespace of the world (its watch delivered them)."""
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "sync",
            "operation": "CREATE",
            "object": fuzz.pod(fuzz.RandomSource(1), world.universe),
        },
    }
    bundle = world.webhook.ca_bundle()

    def all_known() -> bool:
        answers: list[bool] = []
        bodies = []
        for name in world.universe.namespace_names:
            body["request"]["namespace"] = name
            bodies.append(orjson.dumps(body))
        post_reviews(
            world.webhook.admission_url,
            bundle,
            bodies,
            lambda _i, a: answers.append(a.status == 200 and orjson.loads(a.body)["response"]["allowed"]),
        )
        return all(answers)

    wait_for(all_known, timeout=60, interval=0.2, what="the webhook to know the fuzz namespaces")


def test_fuzzed_reviews_over_https(world: World, reliability_scale: Scale) -> None:
    _wait_synced(world)
    total = reliability_scale.pick(2000, 30_000)
    seed = f"https-{total}"  # names differ per run (a fresh prefix), choices do not
    source = fuzz.RandomSource(seed)
    cases = [fuzz.review(source, world.universe, unknown_namespace=0.003) for _ in range(total)]
    outcomes: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    lock = threading.Lock()
    slowest = 0.0

    def judge(index: int, answer: Any) -> None:
        nonlocal slowest
        case = cases[index]
        outcome, problem = _judge(case, answer, world.universe)
        with lock:
            slowest = max(slowest, answer.seconds)
            outcomes[outcome] += 1
            if problem:
                problems.append(f"input {index} of seed {seed} ({case.what}): {problem}")

    started = time.monotonic()
    post_reviews(
        world.webhook.admission_url, world.webhook.ca_bundle(), (c.body for c in cases), judge, concurrency=8
    )
    seconds = time.monotonic() - started

    # One body over the server's limit: refused before it is read, the process unharmed.
    oversize: list[int] = []
    big = b'{"pad": "' + b"x" * (MAX_REQUEST_BYTES + 1024) + b'"}'
    post_reviews(
        world.webhook.admission_url, world.webhook.ca_bundle(), [big], lambda _i, a: oversize.append(a.status)
    )

    assert not problems, f"{len(problems)} wrong answers, first ones:\n" + "\n".join(problems[:10])
    assert oversize == [413], oversize
    assert world.webhook.alive()
    assert world.webhook.get("/readyz")[0] == 200
    errors = metric_total(world.webhook, "chaos_registry_admission_requests", outcome="error")
    assert errors == 0, f"{errors} internal errors counted by the webhook"
    figures.record(SECTION_HTTPS, "inputs_tried", total + 1)
    for outcome, count in sorted(outcomes.items()):
        figures.record(SECTION_HTTPS, outcome, count)
    figures.record(SECTION_HTTPS, "requests per second", round(total / seconds))
    figures.record(SECTION_HTTPS, "slowest answer (s)", round(slowest, 3))
    figures.record(SECTION_HTTPS, "oversize body answered", oversize[0])
    figures.record(SECTION_HTTPS, "process restarts", world.webhook.starts - 1)


def _judge(case: fuzz.ReviewCase, answer: Any, universe: fuzz.Universe) -> tuple[str, str | None]:
    if answer.error is not None:
        return "connection error", f"no answer: {answer.error}"
    if answer.status >= 500:
        return "5xx", f"HTTP {answer.status}: {answer.body[:200]!r}"
    if not case.well_formed:
        if answer.status != 400:
            return "malformed: not 400", f"HTTP {answer.status} for a malformed review: {answer.body[:200]!r}"
        return "malformed: 400", None
    if answer.status != 200:
        return "well-formed: not 200", f"HTTP {answer.status}: {answer.body[:200]!r}"
    response = orjson.loads(answer.body)["response"]
    if response.get("uid") != case.uid:
        return "wrong uid", f"uid {response.get('uid')!r} for {case.uid!r}"
    if case.handled and case.namespace not in universe.namespaces:
        if response["allowed"] is not False:
            return "unknown namespace admitted", "a pod of an unknown namespace was admitted under Fail"
        return "well-formed: unknown namespace refused", None
    if response["allowed"] is not True:
        return "refused", f"refused: {response.get('status')}"
    if "patch" not in response:
        return "well-formed: admitted", None
    patch = orjson.loads(base64.b64decode(response["patch"]))
    try:
        apply_patch(case.pod, patch)
    except Exception as error:
        return "patch does not apply", f"{error}: {patch[:3]}"
    return "well-formed: patched", None


def _prediction(snapshot: Snapshot, pod: dict[str, Any], namespace: str) -> dict[str, Any]:
    mutation = snapshot.admit(pod, namespace)
    patched: dict[str, Any] = apply_patch(pod, mutation.patch) if mutation.patch else pod
    return patched


def _env_values(pod: dict[str, Any]) -> dict[str, dict[str, str | None]]:
    return {
        # an empty value is dropped by the apiserver (omitempty)
        c["name"]: {v["name"]: v.get("value") or None for v in c.get("env") or []}
        for key in ("initContainers", "containers")
        for c in pod["spec"].get(key) or []
    }


def test_generated_pods_through_the_apiserver(world: World, reliability_scale: Scale) -> None:
    """No patch is refused by the apiserver, and what it stores is what the core predicts."""
    _wait_synced(world)
    total = reliability_scale.pick(40, 1000)
    source = fuzz.RandomSource(f"apiserver-pods-{total}")
    namespaces = [n for n in world.universe.namespace_names]
    jobs = []
    for index in range(total):
        pod = fuzz.pod(source, world.universe, valid=True, huge=0.03, ephemeral=False)
        pod["metadata"].pop("generateName", None)
        pod["metadata"]["name"] = f"gen-{index}"
        jobs.append((pod, source.choice(namespaces)))
    snapshot = world.snapshot()
    outcomes: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    lock = threading.Lock()

    def create(job: tuple[dict[str, Any], str]) -> None:
        outcome, problem = _create(job)
        with lock:
            outcomes[outcome] += 1
            if problem:
                problems.append(problem)

    def _create(job: tuple[dict[str, Any], str]) -> tuple[str, str | None]:
        pod, namespace = job
        api = new_api_from(world)
        core = kubernetes.client.CoreV1Api(api)
        try:
            try:  # without the webhook: is the generated pod itself valid?
                core.create_namespaced_pod(world.control_namespace, pod, dry_run="All")
            except kubernetes.client.ApiException as error:
                return "invalid without the webhook (generator)", f"generated pod invalid: {error.body[:300]}"
            try:
                stored = api.sanitize_for_serialization(
                    core.create_namespaced_pod(namespace, pod, dry_run="All")
                )
            except kubernetes.client.ApiException as error:
                name = pod["metadata"]["name"]
                return (
                    "refused with the webhook",
                    f"{namespace}/{name} refused: {error.status} {error.body[:400]}",
                )
            expected = _prediction(snapshot, pod, namespace)
            if images(stored) != images(expected) or _env_values(stored) != _env_values(expected):
                name = pod["metadata"]["name"]
                got, want = _env_values(stored), _env_values(expected)
                env_diff = {
                    c: (got.get(c), want.get(c)) for c in set(got) | set(want) if got.get(c) != want.get(c)
                }
                return "stored differs from prediction", (
                    f"{namespace}/{name}: images {images(stored)} != {images(expected)}; env {env_diff}"
                )
            changed = images(stored) != images(pod)
            return ("admitted, rewritten" if changed else "admitted, unchanged"), None
        finally:
            api.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(create, jobs))
    assert not problems, f"{len(problems)} problems, first ones:\n" + "\n".join(problems[:10])
    figures.record(SECTION_PODS, "inputs_tried", total)
    figures.record(SECTION_PODS, "pods_created", total)
    figures.record(SECTION_PODS, "pods_wrong", len(problems))
    for outcome, count in sorted(outcomes.items()):
        figures.record(SECTION_PODS, outcome, count)


def new_api_from(world: World) -> kubernetes.client.ApiClient:
    return new_api(world.webhook.control_plane)


def test_generated_registries_through_the_apiserver(world: World, reliability_scale: Scale) -> None:
    """Whatever the CRD accepts, the webhook takes in (or ignores with a reason) and keeps admitting."""
    total = reliability_scale.pick(60, 1000)
    source = fuzz.RandomSource(f"apiserver-cir-{total}")
    custom = kubernetes.client.CustomObjectsApi(world.api)
    outcomes: collections.Counter[str] = collections.Counter()
    disagreements: list[str] = []
    created: list[str] = []
    prefix = world.universe.accounts[0]
    try:
        for index in range(total):
            document = fuzz.registry_document(source, world.universe, index)
            document["metadata"] = {"name": f"{prefix}-fz{index}"}
            try:
                stored = custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, document)
            except kubernetes.client.ApiException as error:
                outcomes[
                    "refused by the apiserver" if error.status in (400, 422) else f"HTTP {error.status}"
                ] += 1
                continue
            created.append(document["metadata"]["name"])
            parsed = parse_registry(stored)
            if isinstance(parsed, list):
                if all(KNOWN_GAP in problem for problem in parsed):
                    outcomes[f"known gap: {KNOWN_GAP}"] += 1
                    continue
                outcomes["accepted by the apiserver, ignored by the webhook"] += 1
                disagreements.append(f"{stored['spec']}: {parsed}")
            else:
                outcomes["accepted by both"] += 1
        # the webhook took it all in and still admits, and answers 400/200 as before
        assert world.webhook.alive()
        _wait_synced(world)
        assert world.webhook.get("/readyz")[0] == 200
    finally:
        for name in created:
            with contextlib.suppress(kubernetes.client.ApiException):
                custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    figures.record(SECTION_CIR, "inputs_tried", total)
    for outcome, count in sorted(outcomes.items()):
        figures.record(SECTION_CIR, outcome, count)
    assert not disagreements, "the CRD accepts what the webhook ignores:\n" + "\n".join(disagreements[:10])
