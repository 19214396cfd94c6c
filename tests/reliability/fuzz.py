"""Generated bad (and good) input for the admission fuzz tests.

AdmissionReview bodies (valid JSON and not, wrong kinds, missing fields, odd types at every
level), pods (odd container lists, missing fields, huge pods: 200 containers, 1 MiB of env),
image strings and ChaosImageRegistry documents.

One set of generators, two sources of choices:

* `RandomSource`: a seeded `random.Random`; fast, for the bulk loops (100,000 inputs in
  `make reliability`) and for the HTTPS fuzz against a running `serve` process;
* `DrawSource`: Hypothesis draws, so that a failing input shrinks (tests/unit/test_fuzz_admission.py
  wraps the generators in strategies with `strategy()`).

Every generated review says whether it is well-formed (`ReviewCase.well_formed`): the webhook must
answer those 200 and everything else 400. The rule is the contract of `parse_review`: a JSON object
with kind AdmissionReview, apiVersion admission.k8s.io/v1 and a `request` object holding a non-empty
string `uid`, a string `operation`, an object `object`, no `oldObject` or an object one, and a
namespace (a non-empty string `request.namespace`, else `object.metadata.namespace`).
"""

from __future__ import annotations

import copy
import random
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import orjson
from hypothesis import strategies as st

from webhook.core.models import LEVELS

T = TypeVar("T")

# --- sources of choices -----------------------------------------------------------------------------


class Source(Protocol):
    def integer(self, lo: int, hi: int) -> int: ...

    def choice(self, options: Sequence[T]) -> T: ...

    def chance(self, probability: float) -> bool: ...

    def text(self, alphabet: str, lo: int, hi: int) -> str: ...

    def fork(self) -> RandomSource: ...


class RandomSource:
    """Choices from a seeded `random.Random`."""

    def __init__(self, seed: int | str) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def text(self, alphabet: str, lo: int, hi: int) -> str:
        return "".join(self.rng.choices(alphabet, k=self.rng.randint(lo, hi)))

    def fork(self) -> RandomSource:
        return RandomSource(self.rng.getrandbits(64))


class DrawSource:
    """Choices drawn by Hypothesis (inside `st.composite`), so failures shrink.

    `chance(p)` shrinks towards False and `choice` towards the first option; bulk content (huge
    pods) comes from `fork()`, one drawn seed, which keeps Hypothesis's buffer small. Strategies
    are built once per shape: building one per draw would cost more than the draw.
    """

    _integers: ClassVar[dict[tuple[int, int], st.SearchStrategy[int]]] = {}
    _texts: ClassVar[dict[tuple[str, int, int], st.SearchStrategy[str]]] = {}

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        strategy = self._integers.get((lo, hi))
        if strategy is None:
            strategy = self._integers[(lo, hi)] = st.integers(lo, hi)
        return self.draw(strategy)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.integer(0, len(options) - 1)]

    def chance(self, probability: float) -> bool:
        return self.integer(0, 999) >= 1000 - round(probability * 1000)

    def text(self, alphabet: str, lo: int, hi: int) -> str:
        key = (alphabet, lo, hi)
        strategy = self._texts.get(key)
        if strategy is None:
            strategy = self._texts[key] = st.text(alphabet=alphabet, min_size=lo, max_size=hi)
        return self.draw(strategy)

    def fork(self) -> RandomSource:
        return RandomSource(self.integer(0, 2**64 - 1))


def strategy(generate: Callable[..., T], *args: Any, **kwargs: Any) -> st.SearchStrategy[T]:
    """A Hypothesis strategy from one of the generators below: `strategy(review, universe)`."""

    @st.composite
    def build(draw: st.DrawFn) -> T:
        return generate(DrawSource(draw), *args, **kwargs)

    return build()


# --- the world the inputs live in ---------------------------------------------------------------------

SCOPE_KEYS = LEVELS
LABEL = "chaosregistry.io/"
IMAGE_ENV_VARS = ("LIB_IMAGE", "LOG_WATCHER_IMAGE", "TC_IMAGE", "STRESS_IMAGE")
DIGEST = "sha256:" + "0123456789abcdef" * 4


@dataclass(frozen=True)
class Universe:
    """Accounts, namespaces (name -> labels) and registry servers that generated input refers to.

    Tests against a shared cluster give each run its own accounts and namespace names, so that
    nothing generated resolves for another test's namespaces.
    """

    accounts: tuple[str, ...]
    namespaces: Mapping[str, Mapping[str, str]]
    servers: tuple[str, ...] = (
        "registry.acme.corp:5000/mirror",
        "reg.acme.corp",
        "localhost:5000",
        "us-docker.pkg.dev/gar-prod-setup/harness-public",
        "docker.io",
        "[::1]:5000",
    )
    secret_names: tuple[str, ...] = ("acme-pull", "other-pull")

    @classmethod
    def build(cls, prefix: str = "") -> Universe:
        """Three accounts with a small tree of namespaces, plus the awkward namespaces."""
        a, b, c = (f"{prefix}acme", f"{prefix}globex", f"{prefix}initech")

        def labels(*parts: str, **extra: str) -> dict[str, str]:
            result = {f"{LABEL}{key}": value for key, value in zip(SCOPE_KEYS, parts, strict=False)}
            result.update({f"{LABEL}{key}": value for key, value in extra.items()})
            return result

        namespaces = {
            f"{prefix}ns-a": labels(a),
            f"{prefix}ns-a-retail": labels(a, "retail"),
            f"{prefix}ns-a-retail-pay": labels(a, "retail", "payments"),
            f"{prefix}ns-a-retail-pay-prod": labels(a, "retail", "payments", "prod"),
            f"{prefix}ns-b": labels(b),
            f"{prefix}ns-b-ops-chaos": labels(b, "ops", "chaos"),
            f"{prefix}ns-c-x": labels(c, "x"),
            # project without organization: the longest valid prefix applies, with a warning
            f"{prefix}ns-broken": {f"{LABEL}account": a, f"{LABEL}project": "payments"},
            f"{prefix}ns-opted-out": labels(a, inject="false"),
        }
        return cls(accounts=(a, b, c), namespaces=namespaces)

    @property
    def namespace_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.namespaces))

    def scopes(self) -> list[tuple[str, ...]]:
        """Every scope the namespaces bind to, and their ancestors."""
        found: set[tuple[str, ...]] = set()
        for labels in self.namespaces.values():
            parts: list[str] = []
            for key in SCOPE_KEYS:
                value = labels.get(f"{LABEL}{key}")
                if not value:
                    break
                parts.append(value)
                found.add(tuple(parts))
        return sorted(found)


# --- images -------------------------------------------------------------------------------------------

CATALOG_REPOSITORIES = (
    "chaos-ddcr",
    "chaos-log-watcher",
    "chaos-ddcr-faults",
    "service-discovery-collector",
    "chaos-runner",
    "go-runner",
    "chaos-operator",
    "chaos-exporter",
    "litmus-checker",
    "k8s",
    "argoexec",
    "workflow-controller",
    "subscriber",
    "event-tracker",
    "litmusportal-subscriber",
    "litmusportal-event-tracker",
)
OTHER_REPOSITORIES = ("nginx", "ubuntu", "k6-operator", "iproute2", "busybox", "proxy")
DOMAINS = (
    "",
    "",
    "docker.io/",
    "index.docker.io/",
    "ghcr.io/",
    "localhost/",
    "localhost:5000/",
    "reg:5000/",
    "[::1]:5000/",
    "registry.acme.corp:5000/mirror/",
    "us-docker.pkg.dev/gar-prod-setup/harness-public/",
    "litmuschaos.docker.scarf.sh/",
    "quay.io/",
)
PATHS = ("", "harness/", "litmuschaos/", "library/", "a/b/", "proxy/", "argoproj/")
TAGS = ("", "", ":1.47.0", ":latest", ":3.11.0", ":v3.4.16", ":latest-runner", ":" + "t" * 128, ":1.74.1")
DIGESTS = ("", "", "", f"@{DIGEST}", "@sha512:" + "cd" * 64)
GARBAGE_IMAGES = (
    "",
    " ",
    "UPPER/Case",
    "harness/chaos-ddcr:",
    "a:b:c",
    "https://docker.io/harness/chaos-ddcr:1",
    "nginx@sha256:abc",
    "x" * 300,
    "/chaos-ddcr",
    "chaos-ddcr/",
    "reg.io//chaos-ddcr",
    ":1.0",
    "@sha256:" + "a" * 64,
    "chaos-ddcr:1.0 ",
    "\tchaos-ddcr",
    "chaos ddcr",
    "chaos-ddcr:tag:tag",
    "[::1/chaos-ddcr",
    "localhost:99999999999999999999/chaos-ddcr",
    "a" * 256 + "/chaos-ddcr",
    "docker.io/" + "/".join(["x"] * 200) + "/chaos-ddcr",
)
# Awkward characters: controls, quoting, path and pointer specials, non-ASCII, bidi and BOM.
TRICKY = (
    string.ascii_letters
    + string.digits
    + "-_./:@~ \t\n\x00\x7f\"'\\%{}[]#?&=+,;*!$|<>^`"
    + "é日本語🙂\u202e\ufeff\u200b\u0301"
)
ODD_VALUES: tuple[Any, ...] = (None, 0, -1, 1.5, True, False, "", [], {}, [1, "a"], {"a": 1})


def odd_value(src: Source) -> Any:
    """A value of the wrong type (or an empty one) for whatever field it lands in."""
    if src.chance(0.2):
        return src.text(TRICKY, 0, 12)
    return copy.deepcopy(src.choice(ODD_VALUES))


def valid_reference(src: Source) -> str:
    """A reference that follows the distribution grammar (random components)."""
    parts = [src.text("abcdefghijklmnopqrstuvwxyz0123456789", 1, 8) for _ in range(src.integer(1, 3))]
    separator = src.choice(("-", "_", ".", "__"))
    if src.chance(0.3):
        parts[-1] = f"{parts[-1]}{separator}{src.text('abcdefghijklmnopqrstuvwxyz0123456789', 1, 4)}"
    domain = src.choice(("", "", "reg.example.com/", "reg.example.com:443/", "localhost/", "10.0.0.1:5000/"))
    tag = src.choice(("", ":" + src.text(string.ascii_letters + string.digits + "_.-", 1, 20).lstrip(".-")))
    if tag == ":":
        tag = ""
    return f"{domain}{'/'.join(parts)}{tag}{src.choice(DIGESTS)}"


def image(src: Source, universe: Universe, *, strings_only: bool = False) -> Any:
    """An image field: mostly realistic chaos images, also already rewritten ones, garbage and odd types."""
    kind = src.integer(0, 19)
    if kind <= 9:
        repository = src.choice(CATALOG_REPOSITORIES) if kind <= 7 else src.choice(OTHER_REPOSITORIES)
        return f"{src.choice(DOMAINS)}{src.choice(PATHS)}{repository}{src.choice(TAGS)}{src.choice(DIGESTS)}"
    if kind <= 12:  # already in a target form (a second pass, or a user who wrote the mirror)
        account = src.choice(("harness", "", "chaos/hce", "litmuschaos"))
        prefix = src.choice(universe.servers) + (f"/{account}" if account else "")
        return f"{prefix}/{src.choice(CATALOG_REPOSITORIES)}{src.choice(TAGS)}{src.choice(DIGESTS)}"
    if kind <= 14:
        return valid_reference(src)
    if kind <= 16:
        return src.choice(GARBAGE_IMAGES)
    if kind <= 18 or strings_only:
        if src.chance(0.1):
            return src.fork().text(TRICKY, 300, 5000)
        return src.text(TRICKY, 0, 40)
    return odd_value(src)


# --- pods -------------------------------------------------------------------------------------------

CHAOS_LABELS: tuple[dict[str, str], ...] = (
    {"ddcr.app/name": "chaos-ddcr", "ddcr.app/namespace": "hce"},
    {"chaosUID": "0f6b6c1e-1"},
    {"app.kubernetes.io/component": "chaos-runner"},
    {"app.kubernetes.io/part-of": "litmus", "app.kubernetes.io/component": "experiment-job"},
    {"workflows.argoproj.io/workflow": "wf-1", "workflows.argoproj.io/controller-instanceid": "chaos"},
)
OTHER_LABELS: tuple[dict[str, str], ...] = (
    {"app": "web"},
    {"workflows.argoproj.io/workflow": "wf-1"},
    {"app.kubernetes.io/part-of": "shop"},
    {f"{LABEL}inject": "false"},
    {f"{LABEL}inject": "true"},
)
OTHER_ENV = ("PATH", "HOME", "TARGET_CONTAINER", "LIB_IMAGE_PULL_POLICY")
ORIGINAL_IMAGES = f"{LABEL}original-images"
SCOPE_ANNOTATION = f"{LABEL}scope"


def spoofed_scope_labels(src: Source, universe: Universe) -> dict[str, str]:
    """Pod labels that claim a scope (pods never choose their scope: namespaces do)."""
    parts = [src.choice(universe.accounts), "retail", "payments", "prod"][: src.integer(1, 4)]
    return {f"{LABEL}{key}": value for key, value in zip(SCOPE_KEYS, parts, strict=False)}


def labels(src: Source, universe: Universe, *, valid: bool) -> Any:
    if not valid and src.chance(0.03):
        return odd_value(src)
    result: dict[str, Any] = {}
    for _ in range(src.integer(0, 3)):
        result.update(src.choice(CHAOS_LABELS) if src.chance(0.7) else src.choice(OTHER_LABELS))
    if src.chance(0.1):
        result.update(spoofed_scope_labels(src, universe))
    if not valid and src.chance(0.05):
        result[src.text(TRICKY, 0, 10)] = odd_value(src)
    return result


def annotations(src: Source, universe: Universe, names: Sequence[str], *, valid: bool) -> Any:
    if not valid and src.chance(0.03):
        return odd_value(src)
    result: dict[str, Any] = {}
    roll = src.integer(0, 9)
    if roll == 0:  # a plausible record of originals, maybe for other containers
        record = {name: str(image(src, universe, strings_only=True)) for name in names[:3]}
        if src.chance(0.3):
            record[f"{src.choice(names) if names else 'c0'}/env/LIB_IMAGE"] = "harness/chaos-ddcr-faults:1"
        result[ORIGINAL_IMAGES] = orjson.dumps(record).decode()
    elif roll == 1:  # a broken record
        result[ORIGINAL_IMAGES] = src.choice(('{"a": 1}', "[1, 2]", "{", "null", '"x"', "", '{"a": null}'))
    elif roll == 2:  # a spoofed scope
        result[SCOPE_ANNOTATION] = orjson.dumps(
            {"scope": "/".join(universe.accounts[:1]), "registries": ["victim"]}
        ).decode()
    elif roll == 3:
        result["example.com/note"] = src.text(TRICKY, 0, 30)
    if not valid and src.chance(0.05):
        result[ORIGINAL_IMAGES] = odd_value(src)
    return result


def env_list(src: Source, universe: Universe, *, valid: bool) -> Any:
    if not valid and src.chance(0.05):
        return odd_value(src)
    entries: list[Any] = []
    used: set[str] = set()
    for _ in range(src.integer(0, 5)):
        name = src.choice(IMAGE_ENV_VARS) if src.chance(0.7) else src.choice(OTHER_ENV)
        if valid and name in used:
            continue
        used.add(name)
        roll = src.integer(0, 9)
        if roll <= 6:
            value = image(src, universe, strings_only=valid)
            entries.append({"name": name, "value": value})
        elif roll == 7:
            entries.append({"name": name, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
        elif roll == 8 or valid:
            entries.append({"name": name})
        else:
            entries.append(
                odd_value(src) if src.chance(0.5) else {"name": odd_value(src), "value": odd_value(src)}
            )
    return entries


def container(src: Source, universe: Universe, name: str, *, valid: bool) -> Any:
    if not valid and src.chance(0.03):
        return odd_value(src)
    result: dict[str, Any] = {"name": name}
    if not valid and src.chance(0.05):
        result["name"] = odd_value(src) if src.chance(0.5) else "dup"
    if valid:
        value = image(src, universe, strings_only=True)
        # the apiserver wants a non-empty image without surrounding whitespace
        result["image"] = value if value and value == value.strip() else "harness/chaos-ddcr:1.47.0"
    elif src.chance(0.95):
        result["image"] = image(src, universe)
    if src.chance(0.4):
        result["env"] = env_list(src, universe, valid=valid)
    return result


def container_list(
    src: Source, universe: Universe, prefix: str, *, valid: bool, count: int | None = None
) -> Any:
    if not valid and src.chance(0.03):
        return odd_value(src)
    if count is None:
        count = src.choice((0, 1, 1, 1, 2, 2, 3, 4, 6, 12))
    return [container(src, universe, f"{prefix}{index}", valid=valid) for index in range(count)]


def huge_pod(src: Source, universe: Universe, *, valid: bool) -> dict[str, Any]:
    """200 containers, or about 1 MiB of env in a few containers (built from one forked seed)."""
    bulk = src.fork()
    pod = base_pod(bulk, universe, valid=valid)
    if bulk.chance(0.5):
        pod["spec"]["containers"] = container_list(bulk, universe, "c", valid=valid, count=200)
    else:
        filler = "x" * 1024
        env = [{"name": f"FILLER_{index}", "value": filler} for index in range(1024)]
        env.append({"name": "LIB_IMAGE", "value": "docker.io/harness/chaos-ddcr-faults:1.47.0"})
        pod["spec"]["containers"] = [
            {"name": "fault", "image": "docker.io/harness/chaos-ddcr-faults:1.47.0", "env": env},
            {"name": "log-watcher", "image": "harness/chaos-log-watcher:1.47.0"},
        ]
    return pod


def base_pod(src: Source, universe: Universe, *, valid: bool) -> dict[str, Any]:
    name = src.choice(("pod-network-loss-abcde", "runner", "exp-helper-x1y2", "probe-1", "web-7"))
    metadata: dict[str, Any] = {"name": name, "labels": labels(src, universe, valid=valid)}
    if src.chance(0.1):
        metadata["generateName"] = src.choice(("exp-helper-", "pod-", "runner-"))
        if valid:
            del metadata["name"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"containers": []}}


def pod(
    src: Source, universe: Universe, *, valid: bool = False, huge: float = 0.01, ephemeral: bool = True
) -> Any:
    """A pod. `valid`: one the apiserver accepts (unique names, string images, no ephemeral containers
    unless `ephemeral`); otherwise anything, including odd types at every level."""
    if src.chance(huge):
        return huge_pod(src, universe, valid=valid)
    if not valid and src.chance(0.02):
        return {"metadata": odd_value(src)} if src.chance(0.5) else {"spec": odd_value(src)}
    result = base_pod(src, universe, valid=valid)
    spec: dict[str, Any] = {"containers": container_list(src, universe, "c", valid=valid)}
    if valid and not spec["containers"]:
        spec["containers"] = [container(src, universe, "c0", valid=True)]
    if src.chance(0.2):
        spec["initContainers"] = container_list(src, universe, "init", valid=valid)
    if ephemeral and src.chance(0.1):
        spec["ephemeralContainers"] = container_list(src, universe, "debug", valid=valid)
    if src.chance(0.2):
        secrets: Any = [{"name": src.choice(universe.secret_names)} for _ in range(src.integer(0, 2))]
        if valid:
            secrets = [dict(t) for t in {tuple(s.items()) for s in secrets}]
        elif src.chance(0.1):
            secrets = odd_value(src)
        spec["imagePullSecrets"] = secrets
    if valid and src.chance(0.3):
        spec["restartPolicy"] = "Never"
    result["spec"] = spec
    containers = spec["containers"] if isinstance(spec["containers"], list) else []
    names = [c["name"] for c in containers if isinstance(c, dict) and isinstance(c.get("name"), str)]
    result["metadata"]["annotations"] = annotations(src, universe, names, valid=valid)
    if not valid and src.chance(0.02):
        result["metadata"] = odd_value(src)
    if not valid and src.chance(0.02):
        result["spec"] = odd_value(src)
    return result


# --- ChaosImageRegistry documents ------------------------------------------------------------------

SERVERS_INVALID = (
    "https://reg.io",
    "reg.io/",
    "registry",
    "Reg.io/Mirror",
    "",
    "reg.io:port",
    "a" * 300,
    "reg.io/UPPER",
    "reg io",
)
COMPONENTS = ("ddcr", "logWatcher", "ddcrLib", "ddcrFault", "goRunner", "chaosRunner", "argoexec", "k8s")


def registry_document(src: Source, universe: Universe, index: int, *, valid: bool = False) -> dict[str, Any]:
    """A ChaosImageRegistry over the universe's scopes: valid ones, and (unless `valid`) any kind of
    broken one. Top level and metadata are always objects: the apiserver guarantees that much."""
    scopes = universe.scopes()
    parts = list(src.choice(scopes))
    scope: Any = dict(zip(SCOPE_KEYS, parts, strict=False))
    if not valid and src.chance(0.1):
        roll = src.integer(0, 3)
        if roll == 0:
            scope.pop("organization", None)  # broken chain
        elif roll == 1:
            scope["account"] = src.text(TRICKY, 0, 70)
        elif roll == 2:
            scope[src.choice(SCOPE_KEYS)] = odd_value(src)
        else:
            scope = odd_value(src)
    registry: dict[str, Any] = {}
    if src.chance(0.6):
        registry["server"] = src.choice(universe.servers)
        if not valid and src.chance(0.1):
            registry["server"] = src.choice(SERVERS_INVALID)
    if src.chance(0.5):
        registry["account"] = src.choice(("", "harness", "chaos/hce", "litmuschaos", "proxy"))
        if not valid and src.chance(0.1):
            registry["account"] = src.choice(("UPPER", "a//b", "/a", "a b", odd_value(src)))
    kind = src.choice((None, None, "Public", "Private"))
    if kind:
        registry["type"] = kind
    if kind == "Private" or src.chance(0.2):
        registry["secretName"] = src.choice(universe.secret_names)
    if not valid and src.chance(0.05):
        registry[src.choice(("type", "secretName", "secretNamespace", "mirror"))] = odd_value(src)
    spec: dict[str, Any] = {"scope": scope}
    if registry or src.chance(0.5):
        spec["registry"] = registry
    if src.chance(0.7):
        spec["allowOverrides"] = src.chance(0.5)
    if src.chance(0.3):
        custom: dict[str, Any] = {"enabled": src.chance(0.7)}
        images: dict[str, Any] = {}
        for _ in range(src.integer(0, 3)):
            component = src.choice(COMPONENTS)
            if valid:
                images[component] = valid_reference(src)
            else:
                images[component] = image(src, universe)
        if not valid and src.chance(0.1):
            images[src.text(TRICKY, 0, 10)] = "reg.io/x:1"
        custom["images"] = images
        if not valid and src.chance(0.05):
            custom = odd_value(src)
        spec["customImages"] = custom
    if not valid and src.chance(0.05):
        spec[src.choice(("registry", "allowOverrides", "customImages"))] = odd_value(src)
    document: dict[str, Any] = {
        "apiVersion": "chaosregistry.io/v1alpha1",
        "kind": "ChaosImageRegistry",
        "metadata": {
            "name": f"r{index}",
            "generation": src.integer(1, 5),
            "creationTimestamp": f"2024-01-0{src.integer(1, 3)}T00:00:00Z",
        },
        "spec": spec,
    }
    if not valid and src.chance(0.03):
        document["spec"] = odd_value(src)
    return document


def defaults_configmap(src: Source) -> dict[str, Any] | None:
    """The defaults ConfigMap: absent, a valid override, or a broken one (which the webhook ignores)."""
    roll = src.integer(0, 9)
    if roll <= 5:
        return None
    if roll <= 7:
        text = src.choice(
            (
                "rewriteUnconfiguredScopes: true\n",
                "registry: {server: mirror.example.com, account: ''}\n",
                "customImages: {enabled: true, images: {ddcr: 'reg.io/hce/chaos-ddcr:9'}}\n",
                "catalog:\n  - {repository: my-tool, component: myTool}\n",
                "rewriteUnconfiguredScopes: true\nregistry: {type: Private, secretName: acme-pull}\n",
            )
        )
    else:
        text = src.choice(("{", "- 1\n", "registry: {server: 'https://x'}\n", "catalog: 5\n", "", "null\n"))
    return {"metadata": {"name": "chaos-registry-defaults"}, "data": {"config.yaml": text}}


@dataclass
class Config:
    """One generated configuration: ChaosImageRegistry documents and the defaults ConfigMap."""

    registries: list[dict[str, Any]]
    defaults: dict[str, Any] | None


def config(src: Source, universe: Universe, *, max_registries: int = 8, valid: bool = False) -> Config:
    registries: list[dict[str, Any]] = []
    if src.chance(0.5):  # every account covered: most chaos pods get a patch
        for account in universe.accounts:
            registries.append(
                {
                    "apiVersion": "chaosregistry.io/v1alpha1",
                    "kind": "ChaosImageRegistry",
                    "metadata": {"name": f"root-{account}", "creationTimestamp": "2023-12-31T00:00:00Z"},
                    "spec": {
                        "scope": {"account": account},
                        "registry": {"server": src.choice(universe.servers)},
                    },
                }
            )
    registries += [
        registry_document(src, universe, index, valid=valid)
        for index in range(src.integer(0, max_registries))
    ]
    return Config(registries, None if valid else defaults_configmap(src))


# --- AdmissionReviews -------------------------------------------------------------------------------


@dataclass
class ReviewCase:
    """One request body and what the webhook must make of it."""

    body: bytes
    well_formed: bool
    what: str
    uid: str | None = None
    namespace: str | None = None
    operation: str | None = None
    sub_resource: str = ""
    pod: Any = None
    old_pod: Any = None
    review: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def handled(self) -> bool:
        """CREATE of a pod or UPDATE of pods/ephemeralcontainers: the only requests that get a patch."""
        return (self.operation == "CREATE" and self.sub_resource == "") or (
            self.operation == "UPDATE" and self.sub_resource == "ephemeralcontainers"
        )


OPERATIONS = ("CREATE", "CREATE", "CREATE", "CREATE", "UPDATE", "DELETE", "CONNECT", "create", "")
SUB_RESOURCES: tuple[Any, ...] = ("", "", "", "ephemeralcontainers", "status", "binding", None, 7)


def review_dict(
    src: Source, universe: Universe, *, unknown_namespace: float = 0.01, huge: float = 0.01
) -> tuple[dict[str, Any], ReviewCase]:
    """A well-formed AdmissionReview for a pod (with awkward but acceptable variations)."""
    if src.chance(unknown_namespace):
        namespace = f"unknown-{src.integer(0, 99)}"
    else:
        namespace = src.choice(universe.namespace_names)
    operation = src.choice(OPERATIONS)
    sub_resource = src.choice(SUB_RESOURCES) if operation in ("UPDATE", "CREATE") else ""
    if operation == "UPDATE" and src.chance(0.6):
        sub_resource = "ephemeralcontainers"
    obj = pod(src, universe, huge=huge)
    old: Any = None
    if operation == "UPDATE":
        old = copy.deepcopy(obj)
        if isinstance(old, dict) and isinstance(old.get("spec"), dict) and src.chance(0.7):
            ephemeral = old["spec"].get("ephemeralContainers")
            if isinstance(ephemeral, list) and ephemeral:
                old["spec"]["ephemeralContainers"] = ephemeral[: src.integer(0, len(ephemeral) - 1)]
    uid = src.choice(
        ("705ab4f5-6393-11e8-b7cc-42010a800002", "u", "uid-" + src.text(string.hexdigits, 1, 12))
    )
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": operation,
        "object": obj,
        "userInfo": {"username": "system:serviceaccount:litmus:litmus", "groups": ["system:serviceaccounts"]},
    }
    if src.chance(0.95):
        request["namespace"] = namespace
    elif isinstance(obj.get("metadata"), dict):
        obj["metadata"]["namespace"] = namespace  # the fallback: the object's own namespace
        if src.chance(0.5):
            request["namespace"] = odd_value(src) if src.chance(0.5) else None
            if isinstance(request["namespace"], str):
                request["namespace"] = namespace
    else:
        request["namespace"] = namespace
    if sub_resource is not None:
        request["subResource"] = sub_resource
    if old is not None:
        request["oldObject"] = old
    elif src.chance(0.1):
        request["oldObject"] = None
    if src.chance(0.3):
        request["dryRun"] = src.choice((True, False, None, "yes", 1))
    if src.chance(0.05):
        request[src.text(string.ascii_letters, 1, 8)] = odd_value(src)
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    if src.chance(0.05):
        review["response"] = odd_value(src)
    effective_sub = sub_resource if isinstance(sub_resource, str) else ""
    case = ReviewCase(
        body=b"",
        well_formed=True,
        what="well-formed",
        uid=uid,
        namespace=namespace,
        operation=operation,
        sub_resource=effective_sub,
        pod=obj,
        old_pod=old,
        review=review,
    )
    return review, case


def _set(document: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _delete(document: dict[str, Any], path: Sequence[str]) -> None:
    node = document
    for key in path[:-1]:
        node = node[key]
    node.pop(path[-1], None)


def _not_str_or_empty(src: Source) -> Any:
    value = odd_value(src)
    return "" if isinstance(value, str) else value


def malformed(src: Source, universe: Universe) -> ReviewCase:
    """A request body that is not a well-formed AdmissionReview, with the defect named in `what`."""
    review, _ = review_dict(src, universe, unknown_namespace=0, huge=0.002)
    request = review["request"]
    roll = src.integer(0, 23)
    what: str
    body: bytes | None = None
    if roll == 0:
        body, what = b"", "empty body"
    elif roll == 1:
        whole = orjson.dumps(review)
        body, what = whole[: src.integer(1, max(1, len(whole) - 1))], "truncated JSON"
    elif roll == 2:
        body, what = orjson.dumps(review) + src.choice((b"}", b" x", b",{}", b"\x00")), "trailing garbage"
    elif roll == 3:
        body, what = src.fork().text(TRICKY, 1, 200).encode("utf-8", "surrogatepass"), "random text"
    elif roll == 4:
        raw = bytes(src.fork().rng.getrandbits(8) for _ in range(src.integer(1, 300)))
        body, what = raw, "random bytes"
    elif roll == 5:
        whole = orjson.dumps(review)
        body, what = whole.replace(b'"AdmissionReview"', b'"Admission\xffReview"', 1), "invalid UTF-8"
    elif roll == 6:
        body = src.choice((b"null", b"[]", b'"AdmissionReview"', b"42", b"true", b"[" * 3000 + b"]" * 3000))
        what = "JSON that is not an object"
    elif roll == 7:
        if src.chance(0.5):
            del review["kind"]
        else:
            review["kind"] = src.choice(
                ("Pod", "admissionreview", "AdmissionReviewList", None, 1, ["AdmissionReview"])
            )
        what = "wrong kind"
    elif roll == 8:
        if src.chance(0.5):
            del review["apiVersion"]
        else:
            review["apiVersion"] = src.choice(("admission.k8s.io/v1beta1", "v1", "", None, 1))
        what = "wrong apiVersion"
    elif roll == 9:
        if src.chance(0.3):
            del review["request"]
        else:
            review["request"] = src.choice((None, [], "request", 1, [request]))
        what = "request missing or not an object"
    elif roll == 10:
        if src.chance(0.3):
            del request["uid"]
        else:
            request["uid"] = _not_str_or_empty(src)
        what = "uid missing, empty or not a string"
    elif roll == 11:
        if src.chance(0.4):
            del request["operation"]
        else:
            value = odd_value(src)
            request["operation"] = value if not isinstance(value, str) else None
        what = "operation missing or not a string"
    elif roll == 12:
        if src.chance(0.4):
            del request["object"]
        else:
            request["object"] = src.choice((None, [], "pod", 1, True, [{"kind": "Pod"}]))
        what = "object missing or not an object"
    elif roll == 13:
        request["oldObject"] = src.choice(([], "old", 1, False, [{}]))
        what = "oldObject not an object"
    elif roll == 14:
        request["namespace"] = ""
        what = "namespace empty"
    elif roll == 15:
        request.pop("namespace", None)
        metadata = request["object"].get("metadata")
        if isinstance(metadata, dict):
            metadata.pop("namespace", None)
            if src.chance(0.5):
                metadata["namespace"] = _not_str_or_empty(src)
        what = "namespace missing"
    elif roll == 16:
        request["namespace"] = _not_str_or_empty(src)
        metadata = request["object"].get("metadata")
        if isinstance(metadata, dict):
            metadata.pop("namespace", None)
        what = "namespace not a string and no fallback"
    elif roll == 17:
        body, what = orjson.dumps([review]), "review inside a list"
    elif roll == 18:
        body = orjson.dumps(review).replace(b'"request"', b'"Request"', 1)
        what = "request key misspelt"
    elif roll == 19:
        body = orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})
        what = "no request at all"
    elif roll == 20:
        body, what = (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": NaN}}',
            "NaN",
        )
    elif roll == 21:
        body = (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": "\\ud800"'
        )
        what = "lone surrogate, unterminated"
    elif roll == 22:
        # the object holds a string where every field of a pod would be
        request["object"] = [odd_value(src) for _ in range(src.integer(0, 3))]
        what = "object is a list"
    else:
        body = b"\xef\xbb\xbf" + orjson.dumps(review)
        what = "byte order mark"
    if body is None:
        body = orjson.dumps(review)
    return ReviewCase(body=body, well_formed=False, what=what)


def review(
    src: Source,
    universe: Universe,
    *,
    malformed_share: float = 0.3,
    huge: float = 0.01,
    unknown_namespace: float = 0.01,
) -> ReviewCase:
    """A request body: well-formed (200 expected) or malformed (400 expected)."""
    if src.chance(malformed_share):
        return malformed(src, universe)
    review_document, case = review_dict(src, universe, huge=huge, unknown_namespace=unknown_namespace)
    case.body = orjson.dumps(review_document)
    return case


def resubmission(case: ReviewCase, patched_pod: Any) -> bytes:
    """The same review with the patched pod: what the apiserver sends on reinvocation."""
    assert case.review is not None
    again = copy.deepcopy(case.review)
    again["request"]["object"] = patched_pod
    return orjson.dumps(again)
