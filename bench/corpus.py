"""What the benchmark feeds the webhook: a generated configuration and AdmissionReview requests.

Configuration: K ChaosImageRegistry resources on a tree of scopes (per account 3 organizations,
per organization 3 projects, per project 3 infrastructures: 40 scopes an account, so about 2.5%
account, 7.5% organization, 22.5% project and 67.5% infrastructure level), taken in a fixed order
so that the first 10 of K=1,000 are K=10. Each scope gets one registry and one namespace bound to
it by the chaosregistry.io/* labels.

Requests: every chaos pod kind of DOMAIN.md (examples/pods, plus a service discovery agent that
has no example) and three ordinary pods, 40% chaos and 60% not, defaulted by the apiserver (a
dry-run create in a namespace the webhook does not select returns the pod as admission sees it)
and wrapped in an AdmissionReview like the apiserver's. The uid and namespace are left as holes
filled per request, so every request has its own uid and lands in one of the K namespaces.
"""

from __future__ import annotations

import copy
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from webhook.core.models import LEVELS

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "pods"
GROUP, VERSION, PLURAL = "chaosregistry.io", "v1alpha1", "chaosimageregistries"
FANOUT = 3

# Chaos pods (40% of the requests) by weight: helpers, experiments and Argo steps are the common
# ones, runners start once per experiment run.
CHAOS_WEIGHTS = {
    "litmus-helper": 8,
    "argo-step": 7,
    "litmus-experiment": 6,
    "hce-fault": 6,
    "litmus-runner": 4,
    "hce-helper": 3,
    "litmus-probe": 3,
    "discovery-agent": 2,
    "hce-ddcr-runner": 1,
}
# Ordinary pods (60%) in the same namespaces: the webhook answers them too.
PLAIN_WEIGHTS = {"not-chaos": 25, "app-with-sidecar": 20, "batch-job": 15}

# Pull secrets the Private registries name; the benchmark creates them in the webhook's namespace,
# so the writer copies them into the namespaces of private scopes, as it would for users.
PULL_SECRETS = tuple(f"pull-{i}" for i in range(7))
WEBHOOK_NAMESPACE = "chaos-system"

_UID_HOLE = "@@UID@@"
_NS_HOLE = "@@NAMESPACE@@"


# Configuration ----------------------------------------------------------------------------------


def scopes() -> Iterator[tuple[str, ...]]:
    """Scopes in a fixed order: account a0 and everything under it, then a1, ..."""
    for account in itertools.count():
        a = f"a{account}"
        yield (a,)
        for org in range(FANOUT):
            o = f"o{org}"
            yield (a, o)
            for project in range(FANOUT):
                p = f"p{project}"
                yield (a, o, p)
                for infra in range(FANOUT):
                    yield (a, o, p, f"i{infra}")


def scope_slug(scope: tuple[str, ...]) -> str:
    return "-".join(scope)


def registry_body(index: int, scope: tuple[str, ...]) -> dict[str, Any]:
    """A ChaosImageRegistry of `scope`: mostly public mirrors, some private ones, some custom
    images, a few locks (allowOverrides false, so their subtrees are Blocked)."""
    level = len(scope)
    spec: dict[str, Any] = {"scope": dict(zip(LEVELS, scope, strict=False))}
    kind = index % 10
    registry: dict[str, Any] = {"server": f"registry-{scope_slug(scope)}.example.com:5000/mirror"}
    if level == 1:
        registry["account"] = "harness"
    if kind in (1, 5):
        registry.update(
            type="Private",
            secretName=PULL_SECRETS[index % len(PULL_SECRETS)],
            secretNamespace=WEBHOOK_NAMESPACE,
        )
    if kind == 3 and level >= 3:
        registry = {}
        spec["customImages"] = {
            "enabled": True,
            "images": {
                "ddcr": f"custom-{scope_slug(scope)}.example.com/chaos/chaos-ddcr:1.47.0",
                "ddcrFault": f"custom-{scope_slug(scope)}.example.com/chaos/chaos-ddcr-faults:1.47.0",
                "goRunner": f"custom-{scope_slug(scope)}.example.com/litmus/go-runner:3.11.0",
            },
        }
    if registry:
        spec["registry"] = registry
    # Every 50th project locks its infrastructures.
    spec["allowOverrides"] = not (level == 3 and index % 50 == 7)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ChaosImageRegistry",
        "metadata": {"name": f"bench-{scope_slug(scope)}", "labels": {"bench": "true"}},
        "spec": spec,
    }


def namespace_body(scope: tuple[str, ...]) -> dict[str, Any]:
    labels = {f"chaosregistry.io/{level}": part for level, part in zip(LEVELS, scope, strict=False)}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace_name(scope), "labels": {**labels, "bench": "true"}},
    }


def namespace_name(scope: tuple[str, ...]) -> str:
    return f"bench-{scope_slug(scope)}"


@dataclass(frozen=True)
class Configuration:
    """The first `size` scopes: their registries and namespaces."""

    size: int

    def scopes(self) -> list[tuple[str, ...]]:
        return list(itertools.islice(scopes(), self.size))

    def registries(self, start: int = 0) -> list[dict[str, Any]]:
        return [registry_body(i, s) for i, s in enumerate(self.scopes()) if i >= start]

    def namespaces(self, start: int = 0) -> list[dict[str, Any]]:
        return [namespace_body(s) for i, s in enumerate(self.scopes()) if i >= start]

    def namespace_names(self) -> list[str]:
        return [namespace_name(s) for s in self.scopes()]


# Pods -------------------------------------------------------------------------------------------


def _example(name: str) -> dict[str, Any]:
    pod: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return pod


def pods() -> dict[str, dict[str, Any]]:
    """Every pod kind the corpus uses, as a user or controller would POST it."""
    result = {name: _example(name) for name in CHAOS_WEIGHTS if (EXAMPLES / f"{name}.yaml").exists()}
    # HCE service discovery agent: no example in examples/pods; its images per DOMAIN.md.
    result["discovery-agent"] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "discovery-agent-7f9c-",
            "labels": {"app": "service-discovery-collector"},
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "log-watcher", "image": "docker.io/harness/chaos-log-watcher:1.47.0"},
                {"name": "collector", "image": "docker.io/harness/service-discovery-collector:1.47.0"},
            ],
        },
    }
    result["not-chaos"] = _example("not-chaos")
    result["app-with-sidecar"] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "checkout-6d8f7b9c5-",
            "labels": {"app": "checkout", "pod-template-hash": "6d8f7b9c5", "version": "v2"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "checkout-6d8f7b9c5",
                    "uid": "0b6c1f7e-2d3a-4b5c-8d9e-0f1a2b3c4d5e",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "checkout",
                    "image": "ghcr.io/acme/checkout:2.4.1",
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "env": [{"name": f"SETTING_{i}", "value": f"value-{i}"} for i in range(12)],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/checkout"}],
                },
                {
                    "name": "proxy",
                    "image": "docker.io/envoyproxy/envoy:v1.31.0",
                    "args": ["-c", "/etc/envoy/envoy.yaml"],
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                },
            ],
            "volumes": [{"name": "config", "configMap": {"name": "checkout-config"}}],
        },
    }
    result["batch-job"] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "nightly-report-28700000-",
            "labels": {"job-name": "nightly-report-28700000", "batch.kubernetes.io/job-name": "x"},
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "report",
                    "image": "python:3.12-slim",
                    "command": ["python", "-m", "report"],
                    "env": [{"name": "DATABASE_URL", "value": "postgres://db/reports"}],
                }
            ],
        },
    }
    return result


def admission_object(defaulted: dict[str, Any], posted: dict[str, Any]) -> dict[str, Any]:
    """What the webhook sees of a created pod: the defaulted object, before the storage layer gives
    it a uid, creation time and (for generateName) a name."""
    pod = copy.deepcopy(defaulted)
    metadata = pod["metadata"]
    for key in ("uid", "creationTimestamp", "resourceVersion"):
        metadata.pop(key, None)
    if "name" not in posted["metadata"]:
        metadata.pop("name", None)
    pod.pop("status", None)
    pod["status"] = {}
    return pod


def review(pod: dict[str, Any], uid: str, namespace: str) -> dict[str, Any]:
    """An AdmissionReview for creating `pod` in `namespace`, shaped like the apiserver's."""
    pod = {**pod, "metadata": {**pod["metadata"], "namespace": namespace}}
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": pod["metadata"].get("name", ""),
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {
                "username": f"system:serviceaccount:{namespace}:litmus",
                "uid": "2f0c8a4e-5b6d-4c7e-9f8a-1b2c3d4e5f60",
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace}",
                    "system:authenticated",
                ],
                "extra": {"authentication.kubernetes.io/credential-id": ["JTI=4a5b6c7d-8e9f"]},
            },
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


class Template:
    """An AdmissionReview serialised once, with holes for the uid and the namespace."""

    def __init__(self, kind: str, pod: dict[str, Any]) -> None:
        self.kind = kind
        self.chaos = kind in CHAOS_WEIGHTS
        text = orjson.dumps(review(pod, _UID_HOLE, _NS_HOLE))
        self._parts: list[bytes] = []
        self._slots: list[int] = []  # 0: uid, 1: namespace, after each part but the last
        rest = text
        while True:
            positions = [(rest.find(h.encode()), slot, h) for slot, h in enumerate((_UID_HOLE, _NS_HOLE))]
            positions = [p for p in positions if p[0] >= 0]
            if not positions:
                self._parts.append(rest)
                break
            at, slot, hole = min(positions)
            self._parts.append(rest[:at])
            self._slots.append(slot)
            rest = rest[at + len(hole) :]

    def render(self, uid: bytes, namespace: bytes) -> bytes:
        values = (uid, namespace)
        out = [self._parts[0]]
        for slot, part in zip(self._slots, self._parts[1:], strict=True):
            out.append(values[slot])
            out.append(part)
        return b"".join(out)


class RequestStream:
    """An endless sequence of requests cycling over fixed (template, namespace) picks; fresh uids.

    `run` goes into every uid, so requests of different runs never share one.
    """

    def __init__(self, picks: list[tuple[Template, str]], run: int) -> None:
        self._picks = [
            (template, namespace.encode(), template.kind.encode()) for template, namespace in picks
        ]
        self._next = 0
        self._prefix = f"{run:08x}-0000-4000-8000-".encode()

    @classmethod
    def weighted(
        cls, templates: dict[str, Template], namespaces: list[str], seed: int, run: int, size: int = 16384
    ) -> RequestStream:
        """Pod kinds by CHAOS_WEIGHTS and PLAIN_WEIGHTS, namespaces uniformly, seeded."""
        weights = {**CHAOS_WEIGHTS, **PLAIN_WEIGHTS}
        kinds = [kind for kind in weights if kind in templates]
        rng = random.Random(seed)
        chosen = rng.choices(kinds, [weights[k] for k in kinds], k=size)
        return cls([(templates[k], rng.choice(namespaces)) for k in chosen], run)

    @classmethod
    def sweep(cls, templates: dict[str, Template], namespaces: list[str], run: int) -> RequestStream:
        """One chaos request per namespace, pod kinds in turn: touches every scope once (warm-up)."""
        chaos = [t for t in templates.values() if t.chaos]
        return cls([(chaos[i % len(chaos)], ns) for i, ns in enumerate(namespaces)], run)

    def __len__(self) -> int:
        return len(self._picks)

    def __call__(self) -> tuple[bytes, bytes]:
        i = self._next
        self._next = i + 1
        template, namespace, tag = self._picks[i % len(self._picks)]
        return template.render(self._prefix + b"%012x" % i, namespace), tag


def pull_secret(name: str) -> dict[str, Any]:
    """A docker-registry Secret with dummy credentials."""
    auth = {"auths": {"registry.example.com": {"auth": "YmVuY2g6YmVuY2g="}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": WEBHOOK_NAMESPACE},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": orjson.dumps(auth).decode()},
    }
