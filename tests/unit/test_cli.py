"""Tests for the offline `chaos-registry` program: mutate, explain, validate
(docs/contract.md#the-command-line-program).

Most tests call webhook.cli.main.main in-process with StringIO streams; a few run
`python -m webhook` as a subprocess to prove that bad input never ends in a traceback.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.cli.main import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "examples" / "config")
PODS = ROOT / "examples" / "pods"


def cli(
    *argv: str, stdin: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None
) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def usage_error(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run argv expecting argparse's usage error; returns its stderr."""
    with pytest.raises(SystemExit) as raised:
        main(list(argv), io.StringIO(), io.StringIO())
    assert raised.value.code == EXIT_USAGE
    return capsys.readouterr().err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def subprocess_cli(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", *argv],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- mutate ---------------------------------------------------------------------------------------


def test_mutate_prints_the_mutated_pod_as_yaml() -> None:
    code, out, err = cli("mutate", "-c", CONFIG, str(PODS / "hce-fault.yaml"))
    assert code == EXIT_OK
    assert err == ""
    pod = yaml.safe_load(out)
    assert [c["image"] for c in pod["spec"]["containers"]] == [
        "registry.retail.acme.corp/chaos/chaos-log-watcher:1.47.0",
        "registry.retail.acme.corp/chaos/chaos-ddcr-faults:1.47.0",
    ]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "acme-pull"}]
    assert json.loads(pod["metadata"]["annotations"]["chaosregistry.io/scope"])["scope"] == (
        "acme/retail/payments/prod-ddcr"
    )
    # key order of the input is kept: the output reads like the input
    assert list(pod) == ["apiVersion", "kind", "metadata", "spec"]


def test_mutate_output_json_and_patch() -> None:
    pod_file = str(PODS / "litmus-runner.yaml")
    code_json, out_json, _ = cli("mutate", "-c", CONFIG, pod_file, "-o", "json")
    code_yaml, out_yaml, _ = cli("mutate", "-c", CONFIG, pod_file)
    code_patch, out_patch, _ = cli("mutate", "-c", CONFIG, pod_file, "--patch")
    assert code_json == code_yaml == code_patch == EXIT_OK
    assert json.loads(out_json) == yaml.safe_load(out_yaml)
    patch = json.loads(out_patch)
    assert patch[0] == {
        "op": "replace",
        "path": "/spec/containers/0/image",
        "value": "us-docker.pkg.dev/acme-prod/chaos-public/litmuschaos/chaos-runner:3.11.0",
    }
    assert patch[1]["path"] == "/metadata/annotations"


def test_non_chaos_pod_prints_unchanged() -> None:
    pod_file = PODS / "not-chaos.yaml"
    code, out, err = cli("mutate", "-c", CONFIG, str(pod_file))
    assert (code, err) == (EXIT_OK, "")
    assert yaml.safe_load(out) == yaml.safe_load(pod_file.read_text())
    code, out, _ = cli("mutate", "-c", CONFIG, str(pod_file), "--patch")
    assert (code, out) == (EXIT_OK, "[]\n")


def test_mutate_reads_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (PODS / "litmus-probe.yaml").read_text()
    code, out, _ = cli("mutate", "-c", CONFIG, "-", "--patch", stdin=text, monkeypatch=monkeypatch)
    assert code == EXIT_OK
    assert (
        json.loads(out)[0]["value"]
        == "us-docker.pkg.dev/acme-prod/chaos-public/litmuschaos/litmus-checker:3.11.0"
    )
    # JSON on stdin works too
    as_json = json.dumps(yaml.safe_load(text))
    code, out, _ = cli("mutate", "-c", CONFIG, "-", "-o", "json", stdin=as_json, monkeypatch=monkeypatch)
    assert code == EXIT_OK
    assert json.loads(out)["spec"]["containers"][0]["image"].startswith("us-docker.pkg.dev/")


def test_pod_in_a_namespace_not_in_config_is_treated_as_unlabelled(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "config.yaml",
        """\
        apiVersion: chaosregistry.io/v1alpha1
        kind: ChaosImageRegistry
        metadata: {name: fallback}
        spec:
          scope: {account: default}
          registry: {server: mirror.default.corp}
        """,
    )
    pod = yaml.safe_load((PODS / "hce-ddcr-runner.yaml").read_text())
    pod["metadata"]["namespace"] = "elsewhere"
    pod_file = write(tmp_path, "pod.json", json.dumps(pod))
    code, out, err = cli("mutate", "-c", config, pod_file, "--patch")
    assert code == EXIT_OK
    assert err.splitlines()[0] == (
        f"warning: namespace 'elsewhere' of {pod_file} is not in CONFIG: "
        "treated as a namespace without labels"
    )
    # the default account's registry applies
    assert json.loads(out)[0]["value"] == "mirror.default.corp/harness/chaos-ddcr:1.47.0"
    # a pod without a namespace is in "default"
    del pod["metadata"]["namespace"]
    code, _, err = cli("mutate", "-c", config, write(tmp_path, "pod2.json", json.dumps(pod)))
    assert code == EXIT_OK
    assert "namespace 'default' of" in err


def test_mutate_warnings_go_to_stderr(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "config.yaml",
        """\
        apiVersion: v1
        kind: Namespace
        metadata:
          name: ns
          labels: {chaosregistry.io/account: acme, chaosregistry.io/project: orphan}
        ---
        apiVersion: chaosregistry.io/v1alpha1
        kind: ChaosImageRegistry
        metadata: {name: acme}
        spec:
          scope: {account: acme}
          registry: {server: reg.acme.corp}
          customImages: {enabled: true, images: {ddcr: reg.acme.corp/x/chaos-ddcr:2}}
        """,
    )
    pod_file = write(
        tmp_path,
        "pod.yaml",
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: fault, namespace: ns}
        spec:
          containers:
            - {name: lw, image: "harness/chaos-log-watcher:1"}
            - {name: bad, image: "harness/chaos-ddcr:"}
        """,
    )
    code, out, err = cli("mutate", "-c", config, pod_file, "--patch")
    assert code == EXIT_OK
    assert err.splitlines() == [
        "warning: namespace label chaosregistry.io/organization is missing, so chaosregistry.io/project is "
        "ignored: using scope acme",
        "warning: custom images are enabled but component logWatcher has none: chaos-log-watcher rewritten "
        "to registry reg.acme.corp",
        "warning: image 'harness/chaos-ddcr:' left unchanged: tag is empty (nothing after ':')",
    ]
    assert json.loads(out)[0]["value"] == "reg.acme.corp/harness/chaos-log-watcher:1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: Pod\nspec: [\n", "{p}: invalid YAML at line 3, column 1: expected the node content"),
        ("apiVersion: v1\nkind: Deployment\nspec: {}\n", "{p}: kind: expected Pod, found 'Deployment'"),
        ("apiVersion: v1\nspec: {}\n", "{p}: kind: expected Pod, found None"),
        ("kind: Pod\n", "{p}: spec: missing or not a mapping"),
        ("kind: Pod\nspec: []\n", "{p}: spec: missing or not a mapping"),
        ("- kind: Pod\n", "{p}: not a Kubernetes object (expected a mapping with apiVersion and kind)"),
        ("", "{p}: expected exactly one Pod document, found 0"),
        (
            "kind: Pod\nspec: {}\n---\nkind: Pod\nspec: {}\n",
            "{p}: expected exactly one Pod document, found 2",
        ),
    ],
)
def test_bad_pod_files(tmp_path: Path, text: str, expected: str) -> None:
    pod_file = write(tmp_path, "pod.yaml", text)
    code, out, err = cli("mutate", "-c", CONFIG, pod_file)
    assert code == EXIT_BAD_INPUT
    assert out == ""
    assert err.startswith(f"error: {expected.format(p=pod_file)}")
    assert len(err.splitlines()) == 1


def test_unreadable_pod_file(tmp_path: Path) -> None:
    code, _, err = cli("mutate", "-c", CONFIG, str(tmp_path / "missing.yaml"))
    assert code == EXIT_BAD_INPUT
    assert err == f"error: {tmp_path / 'missing.yaml'}: cannot read: No such file or directory\n"
    code, _, err = cli("mutate", "-c", CONFIG, str(tmp_path))
    assert code == EXIT_BAD_INPUT
    assert err == f"error: {tmp_path}: cannot read: Is a directory\n"


def test_unquoted_timestamps_survive_json_output(tmp_path: Path) -> None:
    # kubectl-style manifests may carry timestamps; they must come out as the strings they were.
    pod_file = write(
        tmp_path,
        "pod.yaml",
        """\
        apiVersion: v1
        kind: Pod
        metadata:
          name: r
          namespace: litmus
          creationTimestamp: 2024-01-01T00:00:00Z
          labels: {chaosUID: x}
        spec:
          containers: [{name: a, image: "litmuschaos/go-runner:1"}]
        """,
    )
    code, out, err = cli("mutate", "-c", CONFIG, pod_file, "-o", "json")
    assert (code, err) == (EXIT_OK, "")
    assert json.loads(out)["metadata"]["creationTimestamp"] == "2024-01-01T00:00:00Z"
    code, out, _ = cli("mutate", "-c", CONFIG, pod_file)
    assert yaml.safe_load(out)["metadata"]["creationTimestamp"] == "2024-01-01T00:00:00Z"


def test_mutate_with_bad_config(tmp_path: Path) -> None:
    config = write(tmp_path, "c.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n")
    code, out, err = cli("mutate", "-c", config, str(PODS / "hce-fault.yaml"))
    assert (code, out) == (EXIT_BAD_INPUT, "")
    assert err.startswith(f"error: {config}: document 1 (Secret s): unsupported kind 'Secret'")


# --- explain --------------------------------------------------------------------------------------


def test_explain_by_namespace_and_by_scope_agree() -> None:
    code_ns, out_ns, err_ns = cli("explain", "-c", CONFIG, "--namespace", "payments-prod-chaos")
    code_scope, out_scope, _ = cli("explain", "-c", CONFIG, "--scope", "acme/retail/payments/prod-ddcr")
    assert code_ns == code_scope == EXIT_OK
    assert err_ns == ""
    assert out_ns == out_scope
    lines = out_ns.splitlines()
    assert lines[0] == "scope: acme/retail/payments/prod-ddcr (Infrastructure)"
    assert any(
        line.split() == ["server:", "registry.retail.acme.corp", "from", "ChaosImageRegistry/acme-retail"]
        for line in lines
    )
    assert any(line.split() == ["account:", "harness", "from", "ChaosImageRegistry/acme"] for line in lines)
    assert "applied: acme, acme-retail, acme-retail-payments" in lines
    assert (
        "  ChaosImageRegistry acme-retail-payments-prod (acme/retail/payments/prod-ddcr) is blocked by "
        "ChaosImageRegistry acme-retail-payments (acme/retail/payments, allowOverrides false)"
    ) in lines


def test_explain_json() -> None:
    code, out, _ = cli("explain", "-c", CONFIG, "--scope", "acme/retail", "-o", "json")
    assert code == EXIT_OK
    document: dict[str, Any] = json.loads(out)
    assert document["scope"] == "acme/retail"
    assert document["level"] == "Organization"
    assert document["registry"]["server"] == {
        "value": "registry.retail.acme.corp",
        "from": "ChaosImageRegistry/acme-retail",
    }
    assert document["registry"]["account"] == {"value": "harness", "from": "ChaosImageRegistry/acme"}
    assert document["customImages"]["enabled"] == {"value": False, "from": "defaults"}
    assert document["applied"] == ["acme", "acme-retail"]
    assert document["blocked"] == []
    # resources below this scope that are blocked are listed with their blocker
    assert document["blockedBelow"] == [
        {
            "resource": "acme-retail-payments-prod",
            "scope": "acme/retail/payments/prod-ddcr",
            "blockedBy": "acme-retail-payments",
            "blockerScope": "acme/retail/payments",
        }
    ]
    assert document["problems"] == []
    assert document["notes"] == []


def test_explain_says_when_pods_of_a_scope_are_left_alone() -> None:
    code, out, _ = cli("explain", "-c", CONFIG, "--scope", "globex", "-o", "json")
    assert code == EXIT_OK
    assert json.loads(out)["notes"] == [
        "no ChaosImageRegistry covers scope globex: its chaos pods are admitted unchanged "
        "(rewriteUnconfiguredScopes in the defaults would apply the registry above)"
    ]
    code, out, _ = cli("explain", "-c", CONFIG, "--namespace", "opted-out")
    assert code == EXIT_OK
    assert "note: namespace opted-out is opted out (chaosregistry.io/inject=false)" in out


def test_explain_unknown_namespace_warns(tmp_path: Path) -> None:
    code, out, err = cli("explain", "-c", CONFIG, "--namespace", "nope")
    assert code == EXIT_OK
    assert err == "warning: namespace 'nope' is not in CONFIG: treated as a namespace without labels\n"
    assert out.splitlines()[0] == "scope: default (Account)"
    assert "applied: none (built-in defaults only)" in out


def test_explain_broken_chain_warns(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "ns.yaml",
        """\
        apiVersion: v1
        kind: Namespace
        metadata:
          name: broken
          labels: {chaosregistry.io/account: acme, chaosregistry.io/infrastructure: x}
        """,
    )
    code, out, err = cli("explain", "-c", CONFIG, "-c", config, "--namespace", "broken")
    assert code == EXIT_OK
    assert "using scope acme" in err
    assert out.splitlines()[0] == "scope: acme (Account)"


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ("acme/x y", "error: --scope: scope 'acme/x y': organization 'x y' is not a valid identifier"),
        ("a/b/c/d/e", "error: --scope: scope 'a/b/c/d/e' must be ACCOUNT[/ORG[/PROJECT[/INFRA]]]"),
        ("", "error: --scope: scope '' must be ACCOUNT[/ORG[/PROJECT[/INFRA]]]"),
    ],
)
def test_explain_bad_scope(scope: str, message: str) -> None:
    code, out, err = cli("explain", "-c", CONFIG, "--scope", scope)
    assert (code, out, err) == (EXIT_BAD_INPUT, "", message + "\n")


# --- validate -------------------------------------------------------------------------------------


def test_validate_examples() -> None:
    code, out, err = cli("validate", "-c", CONFIG)
    assert code == EXIT_OK
    assert out == "ok: 5 ChaosImageRegistry, 5 Namespace, defaults built-in\n"
    assert err.startswith("warning: ")
    assert "(ChaosImageRegistry acme-retail-payments-prod): Blocked: a higher scope is blocking" in err
    # --strict turns warnings into failure
    code, out, _ = cli("validate", "-c", CONFIG, "--strict")
    assert code == EXIT_BAD_INPUT


def test_validate_clean_config_passes_strict(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "c.yaml",
        """\
        apiVersion: chaosregistry.io/v1alpha1
        kind: ChaosImageRegistry
        metadata: {name: acme}
        spec: {scope: {account: acme}, registry: {server: reg.acme.corp}}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: chaos-registry-defaults}
        data:
          config.yaml: |
            defaultAccount: acme
        """,
    )
    code, out, err = cli("validate", "-c", config, "--strict")
    assert (code, out, err) == (
        EXIT_OK,
        "ok: 1 ChaosImageRegistry, 0 Namespace, defaults ConfigMap chaos-registry-defaults\n",
        "",
    )


def test_validate_reports_conflicts_and_broken_namespaces(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "c.yaml",
        """\
        apiVersion: chaosregistry.io/v1alpha1
        kind: ChaosImageRegistry
        metadata: {name: b-newer, creationTimestamp: "2024-02-01T00:00:00Z"}
        spec: {scope: {account: acme}, registry: {server: b.acme.corp}}
        ---
        apiVersion: chaosregistry.io/v1alpha1
        kind: ChaosImageRegistry
        metadata: {name: a-older, creationTimestamp: "2024-01-01T00:00:00Z"}
        spec: {scope: {account: acme}, registry: {server: a.acme.corp}}
        ---
        apiVersion: v1
        kind: Namespace
        metadata:
          name: broken
          labels: {chaosregistry.io/account: acme, chaosregistry.io/project: p}
        """,
    )
    code, out, err = cli("validate", "-c", config)
    assert code == EXIT_OK
    assert out.startswith("ok: 2 ChaosImageRegistry, 1 Namespace")
    assert err.splitlines() == [
        f"warning: {config}: document 1 (ChaosImageRegistry b-newer): Conflicting: "
        "ChaosImageRegistry a-older has the same scope acme and is older (oldest wins, ties by name): "
        "this resource is ignored",
        f"warning: {config}: document 3 (Namespace broken): namespace label chaosregistry.io/organization is "
        "missing, so chaosregistry.io/project is ignored: using scope acme",
    ]
    assert cli("validate", "-c", config, "--strict")[0] == EXIT_BAD_INPUT


def test_validate_errors_name_file_and_field(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "c.yaml",
        """\
        apiVersion: chaosregistry.io/v1alpha1
        kind: ChaosImageRegistry
        metadata: {name: bad}
        spec:
          scope: {account: acme, project: p}
          registry: {server: "https://reg.acme.corp"}
        ---
        apiVersion: chaosregistry.io/v1alpha1
        kind: ChaosImageRegistry
        metadata: {name: private}
        spec:
          scope: {account: acme}
          registry: {type: Private}
        ---
        apiVersion: chaosregistry.io/v1alpha1
        kind: ChaosImageRegistry
        metadata: {name: custom}
        spec:
          scope: {account: other}
          customImages: {images: {nope: reg.acme.corp/x:1}}
        """,
    )
    code, out, err = cli("validate", "-c", config)
    assert (code, out) == (EXIT_BAD_INPUT, "")
    lines = err.splitlines()
    assert lines[:3] == [
        f"error: {config}: document 1 (ChaosImageRegistry bad): spec.scope: project requires organization",
        f"error: {config}: document 1 (ChaosImageRegistry bad): spec.registry.server: "
        "registry server must not include a scheme: drop 'https://'",
        f"error: {config}: document 2 (ChaosImageRegistry private): spec: "
        "registry.type Private requires registry.secretName",
    ]
    assert lines[3].startswith(
        f"error: {config}: document 3 (ChaosImageRegistry custom): spec.customImages.images.nope: "
        "unknown component (known: "
    )
    assert len(lines) == 4


def test_validate_several_configs_and_a_duplicate(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n")
    second = write(tmp_path, "b.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n")
    code, _, err = cli("validate", "-c", first, "-c", second)
    assert code == EXIT_BAD_INPUT
    assert (
        err == f"error: {second}: document 1 (Namespace ns): duplicate Namespace 'ns' "
        f"(first in {first}: document 1)\n"
    )


def test_validate_folder_without_yaml(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = cli("validate", "-c", str(tmp_path))
    assert (code, err) == (EXIT_BAD_INPUT, f"error: {tmp_path}: folder holds no .yaml, .yml or .json file\n")


# --- usage errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["mutate", str(PODS / "hce-fault.yaml")], "the following arguments are required: -c/--config"),
        (["mutate", "-c", CONFIG], "the following arguments are required: POD_FILE"),
        (["mutate", "-c", CONFIG, "p.yaml", "-o", "xml"], "argument -o/--output: invalid choice: 'xml'"),
        (["explain", "-c", CONFIG], "one of the arguments --namespace --scope --pod is required"),
        (["explain", "-c", CONFIG, "--namespace", "a", "--scope", "b"], "not allowed with argument"),
        (["validate", "-c", CONFIG, "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(*argv, capsys=capsys)
    assert fragment in err
    # One line that points at --help, instead of the whole usage.
    assert err.count("\n") == 1 and "--help)" in err, err


# --- as a program: exit codes, and never a traceback ----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "stdin", "code", "fragment"),
    [
        (["validate", "-c", "examples/config"], "", EXIT_OK, "ok: 5 ChaosImageRegistry"),
        (
            ["mutate", "-c", "examples/config", "-", "--patch"],
            "kind: Pod\nspec: [\n",
            EXIT_BAD_INPUT,
            "invalid YAML",
        ),
        (
            ["mutate", "-c", "examples/config", "-"],
            # a chaos pod with odd env entries (a list as a name, no value) and an odd container
            "kind: Pod\nmetadata: {namespace: litmus, labels: {chaosUID: x}}\nspec:\n  containers:\n"
            "    - {name: a, image: nginx, env: [{name: [LIB_IMAGE], value: nginx}, {name: TC_IMAGE}, 7]}\n"
            "    - [not, a, container]\n",
            EXIT_OK,
            "image: us-docker.pkg.dev/acme-prod/chaos-public/litmuschaos/nginx",
        ),
        (["validate", "-c", "does/not/exist"], "", EXIT_BAD_INPUT, "cannot read: no such file or folder"),
        (
            ["validate", "-c", "-"],
            "kind: Deployment\nmetadata: {name: d}\n",
            EXIT_BAD_INPUT,
            "unsupported kind",
        ),
        (["validate", "-c", "-"], "\x00\x01", EXIT_BAD_INPUT, "invalid YAML"),
        (
            ["explain", "-c", "examples/config", "--scope", "a//b"],
            "",
            EXIT_BAD_INPUT,
            "not a valid identifier",
        ),
        (["explain"], "", EXIT_USAGE, "error: one of the arguments --namespace --scope --pod is required"),
    ],
)
def test_program_never_prints_a_traceback(argv: list[str], stdin: str, code: int, fragment: str) -> None:
    result = subprocess_cli(*argv, stdin=stdin)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in result.stdout + result.stderr
    if code == EXIT_BAD_INPUT:
        assert all(line.startswith("error: ") for line in result.stderr.splitlines())
