"""Offline tests of the Helm chart (charts/chaos-registry-webhook), run with the pinned `helm`.

* `helm lint --strict`, and `helm template` golden files (tests/golden/chart/) for every value
  combination that changes the output: each certificate mode, failurePolicy Ignore,
  selectAllNamespaces, an extra secret source namespace, the ServiceMonitor, the PrometheusRule and
  Grafana dashboard (tests/unit/test_monitoring.py tests those further);
* typos and wrong types in values fail with the schema's message (values.schema.json);
* the rendered MutatingWebhookConfiguration is the one `webhook_configuration.build_webhook_configuration`
  builds, and the rendered defaults ConfigMap is the built-in defaults;
* the Deployment's arguments parse as `chaos-registry serve` options that name the chart's objects;
* manifests/ is the chart rendered with default values (what `make check-manifests` checks);
* the README's "Helm values" table lists every value of values.yaml with its default.

After an intended change, regenerate golden files, manifests/ and the README table with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_chart.py`, then review the diff.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane import ensure_binaries
from webhook.cli.main import build_parser
from webhook.core.loader import parse_defaults_configmap
from webhook.core.models import builtin_defaults_document, load_defaults
from webhook.service.options import ServeOptions, add_serve_arguments, options_from_args, validate_options
from webhook.service.tls import webhook_configuration
from webhook.service.writer.record import copies_configmap_name

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "chaos-registry-webhook"
GOLDEN = ROOT / "tests" / "golden" / "chart"
MANIFESTS = ROOT / "manifests" / "chaos-registry-webhook.yaml"
README = ROOT / "README.md"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

RELEASE = "chaos-registry-webhook"
NAMESPACE = "chaos-system"
CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
CA_BUNDLE = base64.b64encode(CA_PEM).decode()

# Golden case -> `helm template` arguments. Each one changes what the chart renders.
CASES: dict[str, list[str]] = {
    "default": [],
    "cert-manager": ["--set", "certificates.mode=certManager"],
    "cert-manager-cluster-issuer": [
        "--set", "certificates.mode=certManager",
        "--set", "certificates.certManager.issuerRef.kind=ClusterIssuer",
        "--set", "certificates.certManager.issuerRef.name=corp-ca",
    ],
    "user-provided": [
        "--set", "certificates.mode=userProvided",
        "--set", "certificates.userProvided.secretName=corp-webhook-tls",
        "--set", f"certificates.userProvided.caBundle={CA_BUNDLE}",
    ],
    "failure-policy-ignore": ["--set", "webhook.failurePolicy=Ignore", "--set", "webhook.timeoutSeconds=2"],
    "select-all-namespaces": ["--set", "webhook.selectAllNamespaces=true"],
    "secret-source-namespaces": ["--set", "secretSourceNamespaces={registry-secrets,chaos-system}"],
    "service-monitor": [
        "--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.labels.release=prom",
    ],
    "monitoring": [
        "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.labels.release=prom",
        "--set", "grafanaDashboard.enabled=true",
    ],
    "single-replica-other-release": [
        "--set", "replicaCount=1", "--release-name=acme-chaos", "--namespace=acme",
    ],
    "image-check": [
        "--set", "imageCheck.enabled=true", "--set", "imageCheck.caConfigMap=registry-ca",
        "--set", "imageCheck.intervalSeconds=300",
    ],
}  # fmt: skip


@pytest.fixture(scope="session")
def helm(request: pytest.FixtureRequest) -> Path:
    """The pinned helm binary (built with the control plane on first use)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        return ensure_binaries() / "helm"


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def template_args(extra: list[str]) -> list[str]:
    """`helm template` arguments; --release-name / --namespace in `extra` replace the defaults."""
    release = next((a.split("=", 1)[1] for a in extra if a.startswith("--release-name=")), RELEASE)
    namespace = next((a.split("=", 1)[1] for a in extra if a.startswith("--namespace=")), NAMESPACE)
    rest = [a for a in extra if not a.startswith(("--release-name=", "--namespace="))]
    return ["template", release, str(CHART), "--namespace", namespace, *rest]


def render_text(helm: Path, extra: list[str], *, include_crds: bool = False) -> str:
    args = template_args(extra) + (["--include-crds"] if include_crds else [])
    return run_helm(helm, *args).stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(helm: Path, extra: list[str] | None = None) -> list[dict[str, Any]]:
    return documents(render_text(helm, extra or []))


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def check_or_update(path: Path, actual: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    assert path.exists(), f"{path.relative_to(ROOT)} is missing: run with UPDATE_GOLDEN=1"
    expected = path.read_text()
    assert actual == expected, (
        f"{path.relative_to(ROOT)} differs from the rendering: if the change is intended, run "
        "`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_chart.py` and review the diff"
    )


# --- lint and golden renderings ---------------------------------------------------------------------


def test_helm_lint_strict(helm: Path) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    "mode_args", [CASES["cert-manager"], CASES["user-provided"]], ids=["certManager", "userProvided"]
)
def test_helm_lint_certificate_modes(helm: Path, mode_args: list[str]) -> None:
    run_helm(helm, "lint", "--strict", str(CHART), *mode_args)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(helm: Path, case: str) -> None:
    check_or_update(GOLDEN / f"{case}.yaml", render_text(helm, CASES[case]))


def test_manifests_are_the_default_rendering(helm: Path) -> None:
    """manifests/ = `make manifests` (the command in the Makefile's RENDER_MANIFESTS)."""
    makefile = (ROOT / "Makefile").read_text()
    command = (
        "helm template chaos-registry-webhook $(CHART) --namespace chaos-system --include-crds --skip-tests"
    )
    assert command in makefile
    rendered = render_text(helm, ["--skip-tests"], include_crds=True)
    assert "helm.sh/hook" not in rendered  # no test objects for `kubectl apply`
    check_or_update(MANIFESTS, rendered)


def test_no_golden_file_without_a_case() -> None:
    stale = sorted(p.stem for p in GOLDEN.glob("*.yaml") if p.stem not in CASES)
    assert not stale, f"golden files without a case (delete them): {stale}"


# --- values validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=x"], "at '/replicaCount': got string, want integer"),
        (["--set", "replicaCount=0"], "at '/replicaCount'"),
        (["--set", "replicas=3"], "additional properties 'replicas' not allowed"),
        (["--set", "webhook.failurePolicy=fail"], "at '/webhook/failurePolicy'"),
        (["--set", "webhook.timeoutSeconds=31"], "at '/webhook/timeoutSeconds'"),
        (["--set", "webhook.selectAll=true"], "additional properties 'selectAll' not allowed"),
        (["--set", "certificates.mode=cert-manager"], "at '/certificates/mode'"),
        (["--set", "defaults.registry.typ=Private"], "additional properties 'typ' not allowed"),
        (["--set", "defaults.catalog[0].repo=x"], "additional properties 'repo' not allowed"),
        (["--set", "secretSourceNamespaces={Bad_Namespace}"], "at '/secretSourceNamespaces/0'"),
        (["--set", "logFormat=yaml"], "at '/logFormat'"),
    ],
)
def test_values_typo_fails_with_a_clear_error(helm: Path, args: list[str], message: str) -> None:
    result = run_helm(helm, *template_args(args), check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "--set",
                "certificates.mode=userProvided",
                "--set",
                f"certificates.userProvided.caBundle={CA_BUNDLE}",
            ],
            "certificates.userProvided.secretName is required when certificates.mode is userProvided",
        ),
        (
            ["--set", "certificates.mode=userProvided", "--set", "certificates.userProvided.secretName=tls"],
            "certificates.userProvided.caBundle (base64 PEM of the CA) is required",
        ),
        (
            ["--set", "serviceAccount.create=false"],
            "serviceAccount.name is required when serviceAccount.create is false",
        ),
    ],
)
def test_missing_required_value_fails(helm: Path, args: list[str], message: str) -> None:
    result = run_helm(helm, *template_args(args), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def _open_objects(schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Paths of schema objects that declare properties but accept unknown ones."""
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and schema.get("additionalProperties") is not False
    ):
        yield path or "/"
    for key, sub in schema.get("properties", {}).items():
        yield from _open_objects(sub, f"{path}/{key}")
    if isinstance(schema.get("items"), dict):
        yield from _open_objects(schema["items"], f"{path}/[]")


def test_schema_refuses_unknown_keys_at_every_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert not list(_open_objects(schema))
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def undeclared(values: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
        if isinstance(values, dict) and "properties" in schema:
            for key, value in values.items():
                if key not in schema["properties"]:
                    yield f"{path}/{key}"
                else:
                    yield from undeclared(value, schema["properties"][key], f"{path}/{key}")

    assert not list(undeclared(values, schema, "")), "values.yaml keys missing from values.schema.json"


# --- the webhook configuration, the defaults and the serve arguments --------------------------------


@pytest.mark.parametrize(
    ("case", "namespace", "select_all", "failure_policy", "timeout", "ca_bundle"),
    [
        ("default", NAMESPACE, False, "Fail", 5, None),
        ("failure-policy-ignore", NAMESPACE, False, "Ignore", 2, None),
        ("select-all-namespaces", NAMESPACE, True, "Fail", 5, None),
        ("user-provided", NAMESPACE, False, "Fail", 5, CA_PEM),
        ("single-replica-other-release", "acme", False, "Fail", 5, None),
    ],
)
def test_webhook_configuration_is_the_one_the_server_builds(
    helm: Path,
    case: str,
    namespace: str,
    select_all: bool,
    failure_policy: str,
    timeout: int,
    ca_bundle: bytes | None,
) -> None:
    docs = render(helm, CASES[case])
    rendered = find(docs, "MutatingWebhookConfiguration")
    service = find(docs, "Service")
    expected = webhook_configuration.build_webhook_configuration(
        name=rendered["metadata"]["name"],
        webhook_namespace=namespace,
        ca_bundle=ca_bundle,
        service_name=service["metadata"]["name"],
        service_port=443,
        failure_policy=failure_policy,
        timeout_seconds=timeout,
        select_all_namespaces=select_all,
    )
    assert rendered["webhooks"] == expected["webhooks"]
    assert rendered["metadata"]["labels"].items() >= expected["metadata"]["labels"].items()
    https = next(port for port in service["spec"]["ports"] if port["name"] == "https")
    assert https == {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}


def test_cert_manager_injects_the_ca_of_its_certificate(helm: Path) -> None:
    docs = render(helm, CASES["cert-manager"])
    certificate = find(docs, "Certificate")
    issuer = find(docs, "Issuer")
    config = find(docs, "MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"{NAMESPACE}/{certificate['metadata']['name']}"
    }
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    assert certificate["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]
    assert certificate["spec"]["privateKey"]["algorithm"] == "ECDSA"  # the server loads ECDSA keys
    service = find(docs, "Service")["metadata"]["name"]
    assert f"{service}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    cluster_issuer = render(helm, CASES["cert-manager-cluster-issuer"])
    assert not [d for d in cluster_issuer if d["kind"] == "Issuer"]
    assert find(cluster_issuer, "Certificate")["spec"]["issuerRef"] == {
        "kind": "ClusterIssuer",
        "name": "corp-ca",
    }


def test_defaults_configmap_is_the_builtin_defaults(helm: Path) -> None:
    configmap = find(render(helm), "ConfigMap", "chaos-registry-defaults")
    override, problems = parse_defaults_configmap(configmap)
    assert problems == []
    assert override == builtin_defaults_document()
    assert load_defaults(override) == load_defaults()


def test_defaults_configmap_takes_values(helm: Path) -> None:
    configmap = find(
        render(
            helm,
            [
                "--set", "defaults.registry.server=registry.acme.corp:5000/mirror",
                "--set", "defaults.registry.type=Private",
                "--set", "defaults.registry.secretName=acme-pull",
                "--set", "defaults.customImages.images.ddcr=registry.acme.corp/chaos-ddcr:1.47.0",
                "--set", "defaults.rewriteUnconfiguredScopes=true",
            ],
        ),
        "ConfigMap",
    )  # fmt: skip
    override, problems = parse_defaults_configmap(configmap)
    assert problems == []
    assert override is not None
    defaults = load_defaults(override)
    assert defaults.registry.server == "registry.acme.corp:5000/mirror"
    assert defaults.registry.secret_name == "acme-pull"
    assert defaults.registry.secret_namespace is None  # "" in values means unset
    assert defaults.custom_images.images == {"ddcr": "registry.acme.corp/chaos-ddcr:1.47.0"}
    assert defaults.rewrite_unconfigured_scopes is True


def serve_options(deployment: dict[str, Any]) -> argparse.Namespace:
    """The container's args parsed by `chaos-registry serve`'s own parser, env references expanded."""
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {"POD_NAMESPACE": deployment["metadata"]["namespace"], "POD_NAME": "pod-0"}
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in container["args"]]
    parser = argparse.ArgumentParser(prog="chaos-registry serve", exit_on_error=False)
    add_serve_arguments(parser)
    return parser.parse_args(args)


@pytest.mark.parametrize("case", sorted(CASES))
def test_deployment_args_are_serve_options_naming_the_chart_objects(helm: Path, case: str) -> None:
    docs = render(helm, CASES[case])
    deployment = find(docs, "Deployment")
    options = options_from_args(serve_options(deployment))
    assert validate_options(options) == []
    namespace = deployment["metadata"]["namespace"]
    assert options.namespace == namespace
    assert options.service_name == find(docs, "Service")["metadata"]["name"]
    assert options.webhook_config_name == find(docs, "MutatingWebhookConfiguration")["metadata"]["name"]
    # The dashboard ConfigMap (grafanaDashboard.enabled) is the only other one.
    configmaps = [d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"]
    assert [n for n in configmaps if not n.endswith("-dashboard")] == [options.defaults_configmap]
    assert options.log_format == "json"
    assert options.webhook_url is None  # in a cluster the chart owns the configuration
    hook = find(docs, "MutatingWebhookConfiguration")["webhooks"][0]
    assert options.failure_policy == hook["failurePolicy"]
    assert options.timeout_seconds == hook["timeoutSeconds"]
    # The writer copies pull secrets into the namespaces the selector matches.
    expressions = hook["namespaceSelector"]["matchExpressions"]
    assert options.select_all_namespaces == all(e["key"] != "chaosregistry.io/account" for e in expressions)
    pod_spec = deployment["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"https": options.port, "metrics": options.health_port}
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["tmp"] == "/tmp" and "emptyDir" in volumes["tmp"]
    config = find(docs, "MutatingWebhookConfiguration")
    if any(d["kind"] == "Certificate" for d in docs):
        mode = "certManager"
    elif "caBundle" in config["webhooks"][0]["clientConfig"]:
        mode = "userProvided"
    else:
        mode = "selfManaged"
    if mode == "selfManaged":
        assert options.tls_mode == "self-managed" and options.manage_ca_bundle
        assert "tls" not in volumes
    else:
        assert options.tls_mode == "files" and not options.manage_ca_bundle
        secret = volumes["tls"]["secret"]["secretName"]
        assert options.tls_cert_file == f"{mounts['tls']}/tls.crt"
        assert options.tls_key_file == f"{mounts['tls']}/tls.key"
        if mode == "certManager":
            assert find(docs, "Certificate")["spec"]["secretName"] == secret
        else:
            assert secret == "corp-webhook-tls"
    extra = [ns for ns in options.secret_source_namespaces if ns != namespace]
    roles = {
        d["metadata"]["namespace"] for d in docs if d["kind"] == "Role" and d not in helm_test_objects(docs)
    }
    assert roles == {namespace, *extra}


def test_pod_runs_under_restricted_pod_security(helm: Path) -> None:
    """The fields Pod Security `restricted` checks (tests/e2e/chart asks the real admission plugin)."""
    deployment = find(render(helm), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True
        assert context["runAsUser"] == context["runAsGroup"] == 65532
        assert container["resources"]["limits"] and container["resources"]["requests"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert [v for v in spec["volumes"] if set(v) - {"name", "emptyDir", "secret"}] == []
    assert deployment["spec"]["replicas"] == 2
    assert find(render(helm), "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"


def test_rbac_has_no_wildcards_and_reads_no_secrets_cluster_wide(helm: Path) -> None:
    docs = render(helm, CASES["secret-source-namespaces"])
    for doc in docs:
        for rule in doc.get("rules", []) if doc["kind"] in ("ClusterRole", "Role") else []:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), f"{doc['kind']} {doc['metadata']['name']}: {rule}"
    cluster_role = find(docs, "ClusterRole")
    secret_verbs = {
        verb for rule in cluster_role["rules"] if "secrets" in rule["resources"] for verb in rule["verbs"]
    }
    assert secret_verbs == {"create", "patch", "delete"}
    webhook_rule = next(r for r in cluster_role["rules"] if "mutatingwebhookconfigurations" in r["resources"])
    assert webhook_rule["resourceNames"] == [find(docs, "MutatingWebhookConfiguration")["metadata"]["name"]]
    source_role = find(docs, "Role", "chaos-registry-webhook-secret-source")
    assert source_role["metadata"]["namespace"] == "registry-secrets"
    assert source_role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]},
    ]
    role = find(docs, "Role", "chaos-registry-webhook")
    named = [rule for rule in role["rules"] if "configmaps" in rule["resources"] and "resourceNames" in rule]
    assert named == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [copies_configmap_name("chaos-registry-webhook-leader")],
            "verbs": ["update"],
        }
    ]


# --- the `helm test` hook (templates/tests/) ----------------------------------------------------------


def helm_test_objects(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A namespaceSelector's matchExpressions (the operators the chart uses) against labels."""
    for expression in selector["matchExpressions"]:
        key, operator = expression["key"], expression["operator"]
        if operator == "Exists" and key not in labels:
            return False
        if operator == "NotIn" and labels.get(key) in expression["values"]:
            return False
    return True


@pytest.mark.parametrize("case", sorted(CASES))
def test_helm_test_checks_a_chaos_pod_in_a_namespace_the_webhook_selects(helm: Path, case: str) -> None:
    docs = render(helm, CASES[case])
    tests = helm_test_objects(docs)
    assert sorted(d["kind"] for d in tests) == [
        "ChaosImageRegistry", "Namespace", "Pod", "Role", "RoleBinding", "ServiceAccount",
    ]  # fmt: skip
    for obj in tests:
        # Deleted when the test passes, kept for a look when it fails, replaced by the next run.
        assert (
            obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
            == "before-hook-creation,hook-succeeded"
        )
    namespace, registry, pod = find(tests, "Namespace"), find(tests, "ChaosImageRegistry"), find(tests, "Pod")
    weights = {d["kind"]: int(d["metadata"]["annotations"].get("helm.sh/hook-weight", "0")) for d in tests}
    assert weights["Namespace"] < weights["Role"] < weights["Pod"]  # the Role lives in the Namespace
    labels = namespace["metadata"]["labels"]
    assert registry["spec"]["scope"] == {"account": labels["chaosregistry.io/account"]}
    hook = find(docs, "MutatingWebhookConfiguration")["webhooks"][0]
    assert selects(
        hook["namespaceSelector"], {"kubernetes.io/metadata.name": namespace["metadata"]["name"], **labels}
    )
    # The pod runs `chaos-registry check-admission` (the CLI's own parser reads its arguments) in the
    # release namespace, which the webhook never selects, with the webhook's image.
    release_namespace = find(docs, "Deployment")["metadata"]["namespace"]
    assert pod["metadata"]["namespace"] == release_namespace
    container = pod["spec"]["containers"][0]
    webhook_container = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == webhook_container["image"]
    assert container["command"] == ["chaos-registry"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "check-admission"
    assert args.namespace == namespace["metadata"]["name"]
    spec_registry = registry["spec"]["registry"]
    assert args.expect_registry == f"{spec_registry['server']}/{spec_registry['account']}"
    assert spec_registry["type"] == "Public" and registry["spec"]["customImages"] == {"enabled": False}


def test_helm_test_runs_with_least_privilege_under_restricted_pod_security(helm: Path) -> None:
    tests = helm_test_objects(render(helm))
    namespace, pod = find(tests, "Namespace"), find(tests, "Pod")
    account = find(tests, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert pod["spec"]["automountServiceAccountToken"] is True  # only the test pod gets its token
    # Its one right: creating (dry-run) pods in the test namespace, which enforces restricted.
    role, binding = find(tests, "Role"), find(tests, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace["metadata"]["name"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": pod["metadata"]["namespace"],
        }
    ]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = spec["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsUser"] == context["runAsGroup"] == 65532
    assert spec["containers"][0]["resources"]["limits"] and spec["containers"][0]["resources"]["requests"]


def test_helm_test_pod_pulls_like_the_webhook(helm: Path) -> None:
    docs = render(
        helm,
        ["--set", "image.repository=127.0.0.1:5000/chaos/chaos-registry-webhook", "--set", "image.tag=dev",
         "--set", "imagePullSecrets={local-pull}", "--set", "image.pullPolicy=Always"],
    )  # fmt: skip
    pod = find(helm_test_objects(docs), "Pod")
    assert pod["spec"]["containers"][0]["image"] == "127.0.0.1:5000/chaos/chaos-registry-webhook:dev"
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "local-pull"}]


def test_image_is_the_one_the_makefile_and_dockerfile_build(helm: Path) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == version
    image = find(render(helm), "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    makefile_image = re.search(r"^IMAGE \?= (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert makefile_image is not None
    assert (
        image == makefile_image.group(1) == f"ghcr.io/chaos-registry-webhook/chaos-registry-webhook:{version}"
    )
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f'org.opencontainers.image.version="{version}"' in dockerfile
    assert 'ENTRYPOINT ["chaos-registry", "serve"]' in dockerfile
    assert "USER 65532:65532" in dockerfile


# --- the README's values table ----------------------------------------------------------------------

TABLE_START = "<!-- values-table:start (generated from values.yaml by tests/unit/test_chart.py) -->"
TABLE_END = "<!-- values-table:end -->"


def documented_values() -> dict[str, str]:
    """Dotted key -> the `# --` comment right above it in values.yaml."""
    documented: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: str | None = None
    for line in (CHART / "values.yaml").read_text().splitlines():
        comment = re.match(r"^\s*# -- (.+)$", line)
        if comment:
            pending = comment.group(1).strip()
            continue
        key = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9_]*):", line)
        if not key:
            continue
        indent = len(key.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key.group(2)))
        if pending is not None:
            documented[".".join(name for _, name in stack)] = pending
            pending = None
    return documented


def value_leaves(values: dict[str, Any], documented: dict[str, str], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in documented:
            yield from value_leaves(value, documented, f"{path}.")
        else:
            yield path


def lookup(values: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        values = values[part]
    return values


def format_default(value: Any) -> str:
    text = json.dumps(value)
    if len(text) > 60:
        return f"{len(value)} entries, see values.yaml"
    return f"`{text}`"


def values_table() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = documented_values()
    rows = ["| Key | Default | Description |", "| --- | --- | --- |"]
    for path in value_leaves(values, documented):
        description = documented[path].replace("|", "\\|")
        rows.append(f"| `{path}` | {format_default(lookup(values, path))} | {description} |")
    return "\n".join(rows)


def test_every_value_is_documented() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = documented_values()
    leaves = list(value_leaves(values, documented))
    assert [path for path in leaves if path not in documented] == []
    assert [path for path in documented if path not in leaves] == []


def test_readme_values_table_matches_values_yaml() -> None:
    readme = README.read_text()
    assert TABLE_START in readme and TABLE_END in readme, "README.md lacks the values table markers"
    before, rest = readme.split(TABLE_START, 1)
    current, after = rest.split(TABLE_END, 1)
    table = values_table()
    if UPDATE:
        README.write_text(f"{before}{TABLE_START}\n{table}\n{TABLE_END}{after}")
        return
    assert current.strip() == table, "the README's Helm values table is stale: run with UPDATE_GOLDEN=1"


# Chart values that set a serve option, and a second valid value for each. A value's default is the
# option's default, and a value set reaches the option: neither side can change alone.
TUNED_VALUES: dict[str, tuple[str, Any]] = {
    "certificates.checkIntervalSeconds": ("cert_check_interval", 15),
    "certificates.selfManaged.certificateValidityDays": ("cert_validity_days", 90),
    "certificates.selfManaged.caValidityDays": ("ca_validity_days", 730),
    "resyncIntervalSeconds": ("resync_interval", 120),
    "webhook.failurePolicy": ("failure_policy", "Ignore"),
    "webhook.timeoutSeconds": ("timeout_seconds", 10),
    "webhook.selectAllNamespaces": ("select_all_namespaces", True),
    "logLevel": ("log_level", "debug"),
}


@pytest.mark.parametrize("path", sorted(TUNED_VALUES))
def test_values_and_serve_options_cannot_drift(helm: Path, path: str) -> None:
    option, other = TUNED_VALUES[path]
    default = lookup(yaml.safe_load((CHART / "values.yaml").read_text()), path)
    assert default == ServeOptions.__dataclass_fields__[option].default, f"{path} vs --{option}"
    assert default != other
    rendered = options_from_args(serve_options(find(render(helm), "Deployment")))
    assert getattr(rendered, option) == default
    changed = options_from_args(serve_options(find(render(helm, ["--set", f"{path}={other}"]), "Deployment")))
    assert getattr(changed, option) == other
