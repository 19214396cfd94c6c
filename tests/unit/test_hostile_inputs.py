"""Hostile and careless input to the command line: one line per problem, the documented exit code.

Each class of breakage is tried with a family of inputs, in every place that reads it (a CONFIG
file, a pod file, stdin, the defaults ConfigMap's `config.yaml`), and every run must:

* end with exit code 0 or 1 (never 3, the internal-error code, never a traceback);
* print on stderr only lines starting `error: ` or `warning: `, each naming the file, and short
  (a value is quoted with at most 200 characters, whatever its length);
* for the refused inputs, say what is wrong (the fragment each case names).

Streams (closed stdin or stdout, /dev/full, /dev/zero, a closed pipe) and folders (a mounted
ConfigMap volume, dangling and looping symlinks, an unreadable subfolder) run the real program as
a subprocess. Figures (inputs per class, slowest case, peak memory) go to RELIABILITY.md.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability import figures
from tests.reliability.scale import current_scale
from webhook.cli.main import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, main
from webhook.core import documents
from webhook.core.documents import LOADERS, MAX_INPUT_BYTES, PurePythonLoader, dump_yaml, parse_documents
from webhook.core.loader import parse_defaults_configmap
from webhook.core.models import builtin_defaults_document

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "examples" / "config")
POD = str(ROOT / "examples" / "pods" / "litmus-runner.yaml")
SCALE = current_scale()
SECTION = "hostile CLI inputs"
MAX_LINE = 200 + 400  # the quoted value plus the file name, document and field
slowest: dict[str, float] = {"seconds": 0.0}

REGISTRY = """apiVersion: chaosregistry.io/v1alpha1
kind: ChaosImageRegistry
metadata: {name: acme}
spec:
  scope: {account: acme}
  registry: {server: registry.acme.corp, account: chaos}
"""


def _count(kind: str, seconds: float, label: str) -> None:
    figures.add(SECTION, "inputs_tried", 1)
    figures.add(SECTION, f"inputs: {kind}", 1)
    figures.record(SECTION, "tracebacks", 0)
    if seconds > slowest["seconds"]:
        slowest["seconds"] = seconds
        figures.record(SECTION, "slowest case seconds", round(seconds, 3))
        figures.record(SECTION, "slowest case", label)
    figures.record(SECTION, "peak RSS MiB (test process)", _rss_mib(resource.RUSAGE_SELF))
    figures.record(SECTION, "peak RSS MiB (any CLI subprocess)", _rss_mib(resource.RUSAGE_CHILDREN))


def _rss_mib(who: int) -> int:
    return round(resource.getrusage(who).ru_maxrss / 1024)


def check_lines(err: str, code: int) -> None:
    assert "Traceback" not in err
    for line in err.splitlines():
        assert line.startswith(("error: ", "warning: ", "chaos-registry")), line[:300]
        assert len(line) <= MAX_LINE, f"{len(line)} characters: {line[:300]}..."
    if code == EXIT_BAD_INPUT:
        assert err.strip(), "exit 1 without a message"


def run_cli(kind: str, argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    """In-process: exit code, stdout, stderr; every run is counted for the figures."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    started = time.perf_counter()
    try:
        code = main(argv, out, err)
    finally:
        sys.stdin = saved
    _count(kind, time.perf_counter() - started, " ".join(a[:60] for a in argv))
    assert code in (EXIT_OK, EXIT_BAD_INPUT), (code, err.getvalue()[:500])
    check_lines(err.getvalue(), code)
    return code, out.getvalue(), err.getvalue()


def run_program(kind: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "webhook", *argv],
        cwd=ROOT,
        capture_output=kwargs.pop("capture_output", True),
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )
    _count(kind, time.perf_counter() - started, " ".join(a[:60] for a in argv))
    if result.stderr is not None:
        check_lines(result.stderr, result.returncode)
    return result


def pod_text(**metadata_extra: Any) -> str:
    pod = yaml.safe_load(Path(POD).read_text())
    pod["metadata"].update(metadata_extra)
    return yaml.safe_dump(pod)


# --- the classes ----------------------------------------------------------------------------------


def _nested(depth: int, style: str) -> str:
    if style == "flow":
        return "[" * depth + "]" * depth
    if style == "json":
        return '{"a":' * depth + "1" + "}" * depth
    return "".join("  " * i + "- \n" for i in range(depth - 1)) + "  " * (depth - 1) + "- x\n"


NESTING_DEPTHS = [101, 999, 1000, 1001, 10_000, 1_000_000]


def nesting_cases() -> Iterator[tuple[str, str]]:
    for depth in NESTING_DEPTHS:
        for style in ("flow", "json", "block"):
            if style == "block" and depth > 1001:
                continue  # block nesting costs depth² bytes of indentation: the size limit answers
            yield f"{style} {depth}", _nested(depth, style)


@pytest.mark.parametrize(("name", "value"), list(nesting_cases()))
@pytest.mark.parametrize("place", ["config", "pod", "configmap"])
def test_deep_nesting_is_refused_in_one_line(tmp_path: Path, place: str, name: str, value: str) -> None:
    block = "\n" in value.strip()  # a whole document of nested block sequences
    path = tmp_path / "input.yaml"
    if place == "config":
        nested = value if block else f"kind: Namespace\nmetadata: {{name: x}}\nextra: {value}\n"
        path.write_text(REGISTRY + "---\n" + nested)
        code, _, err = run_cli("deep nesting", ["validate", "-c", str(path)])
    elif place == "pod":
        path.write_text(value if block else pod_text() + f"x-extra: {value}\n")
        code, _, err = run_cli("deep nesting", ["mutate", "-c", CONFIG, str(path), "-o", "json"])
    else:
        text = value if block else f"rewriteUnconfiguredScopes: {value}"
        configmap = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "chaos-registry-defaults"},
            "data": {"config.yaml": text},
        }
        path.write_text(json.dumps(configmap))
        code, _, err = run_cli("deep nesting", ["validate", "-c", str(path)])
    assert code == EXIT_BAD_INPUT
    assert "nested more than 100 levels deep" in err, err[:500]


def test_nesting_within_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(pod_text() + f"x-extra: {_nested(90, 'flow')}\n")
    code, out, _ = run_cli("deep nesting", ["mutate", "-c", CONFIG, str(path), "-o", "json"])
    assert code == EXIT_OK and json.loads(out)["x-extra"] is not None


@pytest.mark.parametrize("digits", [4300, 4301, 10_000, 1_000_000])
@pytest.mark.parametrize("output", ["yaml", "json"])
def test_huge_integers(tmp_path: Path, digits: int, output: str) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text(pod_text() + f"x-number: {'9' * digits}\n")
    code, out, err = run_cli("huge integers", ["mutate", "-c", CONFIG, str(pod), "-o", output])
    if digits <= 4300:
        assert code == EXIT_OK and str(10**digits - 1)[:50] in out
    else:
        assert code == EXIT_BAD_INPUT and "an integer of more than 4300 digits" in err, err
    config = tmp_path / "config.yaml"
    config.write_text(REGISTRY.replace("server: registry.acme.corp", f"server: {'9' * digits}"))
    code, _, err = run_cli("huge integers", ["validate", "-c", str(config)])
    assert code == EXIT_BAD_INPUT and len(err) < 2 * MAX_LINE


YAML_ONLY = {
    "binary": ("x: !!binary aGVsbG8=", "!!binary values are not allowed"),
    "set": ("x: !!set {a, b}", "!!set values are not allowed"),
    "timestamp value": ("x: !!timestamp 2001-12-14", "values (e.g. !!timestamp) are not allowed"),
    "timestamp key": ("x: {? !!timestamp 2001-12-14 : y}", "is not a string, number or boolean"),
    "nan": ("x: .nan", "is not a number JSON can hold"),
    "infinity": ("x: -.inf", "is not a number JSON can hold"),
    "self alias list": ("x: &a [1, *a]", "an alias refers to a value that holds it"),
    "self alias map": ("x: &a {k: *a}", "an alias refers to a value that holds it"),
    "python object": ("x: !!python/object:os.system {}", "could not determine a constructor"),
    "unknown tag": ("x: !vault secret", "could not determine a constructor"),
    "list as a key": ("x: {? [1, 2] : y}", "key [1, 2] is not a string, number or boolean"),
    "merge of a scalar": ("x: {<<: 1}", "expected a mapping or list of mappings"),
}


@pytest.mark.parametrize("case", sorted(YAML_ONLY))
@pytest.mark.parametrize("output", ["yaml", "json"])
def test_values_json_cannot_hold_are_refused(tmp_path: Path, case: str, output: str) -> None:
    text, fragment = YAML_ONLY[case]
    pod = tmp_path / "pod.yaml"
    pod.write_text(pod_text() + text + "\n")
    code, out, err = run_cli("YAML-only values", ["mutate", "-c", CONFIG, str(pod), "-o", output])
    assert (code, out) == (EXIT_BAD_INPUT, ""), err
    assert fragment in err and str(pod) in err, err


def test_timestamps_and_yaml_11_scalars_stay_what_kubectl_sends(tmp_path: Path) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text(pod_text() + "x-when: 2001-12-14\nx-keys: {2001-12-14: a, 1: b, true: c, null: d}\n")
    code, out, _ = run_cli("YAML-only values", ["mutate", "-c", CONFIG, str(pod), "-o", "json"])
    assert code == EXIT_OK
    result = json.loads(out)
    assert result["x-when"] == "2001-12-14"
    assert result["x-keys"] == {"2001-12-14": "a", "1": "b", "true": "c", "null": "d"}


def alias_bomb(levels: int, fan: int = 9) -> str:
    lines = ["a0: &a0 [lol]"]
    for level in range(1, levels + 1):
        refs = ", ".join(f"*a{level - 1}" for _ in range(fan))
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [5, 7, 9, 12])
@pytest.mark.parametrize("command", ["mutate-json", "mutate-yaml", "mutate-patch", "validate"])
def test_alias_bombs_are_refused_before_expansion(tmp_path: Path, levels: int, command: str) -> None:
    bomb = alias_bomb(levels)
    assert len(bomb) < 4096  # a few KB: 9**levels values once expanded
    path = tmp_path / "input.yaml"
    if command == "validate":
        path.write_text(REGISTRY + "---\nkind: Namespace\nmetadata: {name: x}\nx-bomb:\n" + _indent(bomb))
        code, _, err = run_cli("alias bombs", ["validate", "-c", str(path)])
    else:
        path.write_text(pod_text() + "x-bomb:\n" + _indent(bomb))
        extra = {"mutate-json": ["-o", "json"], "mutate-yaml": [], "mutate-patch": ["--patch"]}[command]
        code, _, err = run_cli("alias bombs", ["mutate", "-c", CONFIG, str(path), *extra])
    if 2 * 9**levels < documents.MAX_VALUES:
        assert code == EXIT_OK, err
    else:
        assert code == EXIT_BAD_INPUT
        assert "values once its aliases are expanded" in err, err


def _indent(text: str) -> str:
    return "".join("  " + line + "\n" for line in text.splitlines())


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("1", "must be a string (the YAML text), not int"),
        ("[a, b]", "must be a string (the YAML text), not list"),
        ("{a: b}", "must be a string (the YAML text), not dict"),
        ("null", "must be a string (the YAML text), not NoneType"),
        ("true", "must be a string (the YAML text), not bool"),
        ('"a: 1\\n---\\nb: 2"', "must be one YAML document, found 2"),
        ('"- 1"', "must be a YAML mapping"),
        ('"x: !!binary aGVsbG8="', "!!binary values are not allowed"),
        ('"x: &a [*a]"', "an alias refers to a value that holds it"),
        ('"rewriteUnconfiguredScopes: \\"true\\""', "Input should be a valid boolean"),
        ('"rewriteUnconfiguredScopes: 1"', "Input should be a valid boolean"),
    ],
)
def test_defaults_configmap_data_that_is_not_yaml_text(tmp_path: Path, value: str, fragment: str) -> None:
    path = tmp_path / "defaults.yaml"
    path.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: chaos-registry-defaults}\n"
        f"data:\n  config.yaml: {value}\n"
    )
    code, _, err = run_cli("defaults ConfigMap data", ["validate", "-c", str(path)])
    assert code == EXIT_BAD_INPUT and fragment in err, err


# --- validate as the apiserver would ----------------------------------------------------------------

APISERVER_RULES = {
    "duplicate top-level key": (REGISTRY + "kind: ChaosImageRegistry\n", "duplicate key 'kind'"),
    "duplicate spec key": (REGISTRY + "  allowOverrides: true\n  allowOverrides: false\n", "duplicate key"),
    "duplicate label": (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: {a: x, a: z}\n",
        "duplicate key 'a'",
    ),
    "string false": (
        REGISTRY + '  allowOverrides: "false"\n',
        "spec.allowOverrides: Input should be a valid boolean",
    ),
    "integer boolean": (
        REGISTRY + "  customImages: {enabled: 1}\n",
        "spec.customImages.enabled: Input should be a valid boolean",
    ),
    "yes boolean": (REGISTRY + "  allowOverrides: 'yes'\n", "Input should be a valid boolean"),
    "upper-case registry name": (REGISTRY.replace("name: acme}", "name: Acme}"), "not a valid name"),
    "registry name with underscore": (REGISTRY.replace("name: acme}", "name: a_b}"), "not a valid name"),
    "registry name 254 characters": (
        REGISTRY.replace("name: acme}", f"name: {'a' * 254}}}"),
        "not a valid name",
    ),
    "namespace named n (a YAML 1.1 boolean for kubectl)": (
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n",
        "metadata.name: missing",
    ),
    "label value y (a YAML 1.1 boolean for kubectl)": (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: {a: y}\n",
        "must be a string, not bool",
    ),
    "namespace name with a dot": (
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n",
        "not a valid Namespace name",
    ),
    "namespace name 64 characters": (
        f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {'a' * 64}}}\n",
        "not a valid Namespace name",
    ),
    "label value 64 characters": (
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: {{a: {'b' * 64}}}\n",
        "is not a valid label value",
    ),
    "label value with a space": (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: {a: 'b c'}\n",
        "is not a valid label value",
    ),
    "label key with an upper-case prefix": (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: {Example.com/a: b}\n",
        "the prefix must be a lowercase DNS subdomain",
    ),
    "label key of 64 characters": (
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: {{{'k' * 64}: b}}\n",
        "the name part must be 1-63",
    ),
    "label value that is a number": (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: {a: 1}\n",
        "must be a string, not int",
    ),
    "annotation value that is a boolean": (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  annotations: {a: true}\n",
        "must be a string, not bool",
    ),
}


@pytest.mark.parametrize("case", sorted(APISERVER_RULES))
def test_validate_refuses_what_the_apiserver_refuses(tmp_path: Path, case: str) -> None:
    text, fragment = APISERVER_RULES[case]
    path = tmp_path / "input.yaml"
    path.write_text(text)
    code, _, err = run_cli("apiserver rules", ["validate", "-c", str(path)])
    assert code == EXIT_BAD_INPUT and fragment in err, err


def test_docker_hub_with_an_empty_account_is_warned(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(
        REGISTRY.replace("server: registry.acme.corp, account: chaos", 'server: docker.io, account: ""')
    )
    code, out, err = run_cli("apiserver rules", ["validate", "-c", str(path)])
    assert code == EXIT_OK and out.startswith("ok:")
    assert "library/" in err and "set registry.account" in err, err
    code, _, _ = run_cli("apiserver rules", ["validate", "--strict", "-c", str(path)])
    assert code == EXIT_BAD_INPUT


@pytest.mark.parametrize(
    "field",
    [
        "metadata: {name: NAME}",
        "spec: {scope: {account: NAME}}",
        "registry: {server: NAME}",
        "customImages: {images: {ddcr: NAME}}",
    ],
)
def test_messages_quote_at_most_200_characters(tmp_path: Path, field: str) -> None:
    long_value = "X" * 100_000
    text = REGISTRY
    if field.startswith("metadata"):
        text = text.replace("name: acme}", f"name: {long_value}}}")
    elif field.startswith("spec"):
        text = text.replace("account: acme}", f"account: {long_value}}}")
    elif field.startswith("registry"):
        text = text.replace("server: registry.acme.corp", f"server: {long_value}")
    else:
        text += f"  customImages: {{images: {{ddcr: {long_value}}}}}\n"
    path = tmp_path / "long.yaml"
    path.write_text(text)
    code, _, err = run_cli("long values", ["validate", "-c", str(path)])
    assert code == EXIT_BAD_INPUT
    assert "X" * 201 not in err, err[:400]


# --- streams and sizes: the real program --------------------------------------------------------------


def test_an_input_over_the_size_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("w") as stream:
        stream.write(REGISTRY)
        stream.write("#" * MAX_INPUT_BYTES + "\n")
    code, _, err = run_cli("sizes and streams", ["validate", "-c", str(big)])
    assert code == EXIT_BAD_INPUT and f"{big}: larger than the 16 MiB limit on input files" in err


@pytest.mark.parametrize("argv", [["validate", "-c", "/dev/zero"], ["mutate", "-c", CONFIG, "/dev/zero"]])
def test_an_endless_input_ends_with_the_size_limit(argv: list[str]) -> None:
    result = run_program("sizes and streams", argv)
    assert result.returncode == EXIT_BAD_INPUT
    assert "/dev/zero: larger than the 16 MiB limit on input files" in result.stderr


def test_an_endless_stdin() -> None:
    with open("/dev/zero", "rb") as zero:
        result = run_program("sizes and streams", ["mutate", "-c", CONFIG, "-"], stdin=zero)
    assert result.returncode == EXIT_BAD_INPUT and "-: larger than the 16 MiB limit" in result.stderr


def test_closed_stdin() -> None:
    result = run_program("sizes and streams", ["mutate", "-c", CONFIG, "-"], stdin=subprocess.DEVNULL)
    assert result.returncode == EXIT_BAD_INPUT  # empty: no Pod document
    closed = subprocess.run(
        ["sh", "-c", f'exec "$0" -m webhook mutate -c {CONFIG} - <&-', sys.executable],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _count("sizes and streams", 0.0, "stdin closed")
    assert closed.returncode == EXIT_BAD_INPUT, closed.stderr
    assert closed.stderr == "error: -: cannot read: standard input is closed\n"


@pytest.mark.parametrize("target", ["closed", "/dev/full", "closed pipe"])
def test_output_that_cannot_be_written(target: str) -> None:
    argv = f"-m webhook mutate -c {CONFIG} {POD} -o json"
    if target == "closed":
        command = f'exec "$0" {argv} >&-'
    elif target == "/dev/full":
        command = f'exec "$0" {argv} >/dev/full'
    else:
        command = f'"$0" {argv} | true; exit ${{PIPESTATUS[0]}}'
    started = time.perf_counter()
    result = subprocess.run(
        ["bash", "-c", command, sys.executable],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _count("sizes and streams", time.perf_counter() - started, f"stdout {target}")
    check_lines(result.stderr, result.returncode)
    if target == "closed pipe":
        assert (result.returncode, result.stderr) == (EXIT_OK, "")
    else:
        assert result.returncode == EXIT_BAD_INPUT, result.stderr
        assert result.stderr.startswith("error: cannot write output: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("folder as pod", "cannot read: Is a directory"),
        ("not UTF-8", "cannot read: not UTF-8 text"),
        ("fifo with nothing", "expected exactly one Pod document, found 0"),
    ],
)
def test_odd_files_as_a_pod(tmp_path: Path, setup: str, fragment: str) -> None:
    path = tmp_path / "pod"
    if setup == "folder as pod":
        path.mkdir()
    elif setup == "not UTF-8":
        path.write_bytes(b"kind: Pod\nx: \xff\xfe\n")
    else:
        os.mkfifo(path)
        opener = subprocess.Popen(["sh", "-c", f"exec 3>{path}; sleep 0.5"])
    result = run_program("sizes and streams", ["mutate", "-c", CONFIG, str(path)])
    if setup == "fifo with nothing":
        opener.wait(timeout=10)
    assert result.returncode == EXIT_BAD_INPUT and fragment in result.stderr, result.stderr


# --- folders ----------------------------------------------------------------------------------------


def configmap_volume(root: Path, files: dict[str, str]) -> Path:
    """The layout the kubelet writes for a ConfigMap volume: `..data` and a timestamped folder."""
    folder = root / "volume"
    timestamped = folder / "..2026_11_30_05_00_00.123456789"
    timestamped.mkdir(parents=True)
    for name, text in files.items():
        (timestamped / name).write_text(text)
    (folder / "..data").symlink_to(timestamped.name)
    for name in files:
        (folder / name).symlink_to(f"..data/{name}")
    return folder


def test_a_mounted_configmap_volume_is_read_once(tmp_path: Path) -> None:
    files = {p.name: p.read_text() for p in sorted(Path(CONFIG).iterdir())}
    volume = configmap_volume(tmp_path, files)
    code, out, err = run_cli("folders", ["validate", "-c", str(volume)])
    expected = run_cli("folders", ["validate", "-c", CONFIG])
    assert (code, out, err.count("\n")) == (expected[0], expected[1], expected[2].count("\n"))
    assert "..data" not in err and "..2026" not in err
    # The same file named twice (directly and through a symlink) is read once, too.
    linked = tmp_path / "linked"
    linked.mkdir()
    for path in Path(CONFIG).iterdir():
        (linked / path.name).symlink_to(path)
    code, out, _ = run_cli("folders", ["validate", "-c", CONFIG, "-c", str(linked)])
    assert (code, out) == expected[:2]


def test_dangling_and_looping_symlinks_are_reported(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "ok.yaml").write_text(REGISTRY)
    (folder / "gone.yaml").symlink_to("missing.yaml")
    (folder / "loop.yaml").symlink_to("loop.yaml")
    (folder / "sub").mkdir()
    (folder / "sub" / "parent").symlink_to("..")  # a folder loop: walked once, not forever
    code, _, err = run_cli("folders", ["validate", "-c", str(folder)])
    assert code == EXIT_BAD_INPUT
    assert f"error: {folder / 'gone.yaml'}: cannot read: dangling symlink (to missing.yaml)" in err
    assert f"error: {folder / 'loop.yaml'}: cannot read: symlink loop" in err
    code, _, err = run_cli("folders", ["validate", "-c", str(folder / "loop.yaml")])
    assert (code, err) == (EXIT_BAD_INPUT, f"error: {folder / 'loop.yaml'}: cannot read: symlink loop\n")


def test_an_unreadable_subfolder_is_reported() -> None:
    # Root reads everything: run the program as nobody, over a folder it may enter.
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        root.chmod(0o755)
        (root / "ok.yaml").write_text(REGISTRY)
        (root / "ok.yaml").chmod(0o644)
        (root / "secret").mkdir(mode=0o700)
        (root / "secret" / "x.yaml").write_text(REGISTRY)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        started = time.perf_counter()
        if not prefix:
            (root / "secret").chmod(0)
        result = subprocess.run(
            [*prefix, sys.executable, "-m", "webhook", "validate", "-c", str(root)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "HOME": str(root)},
        )
        _count("folders", time.perf_counter() - started, "unreadable subfolder")
        assert result.returncode == EXIT_BAD_INPUT, result.stderr
        assert result.stderr == f"error: {root / 'secret'}: cannot read folder: Permission denied\n"
    finally:
        (root / "secret").chmod(0o700)
        shutil.rmtree(root)


# --- generated garbage --------------------------------------------------------------------------------

fragments = st.sampled_from(
    ["[", "]", "{", "}", ":", "- ", "&a ", "*a", "!!binary ", "!!set ", "? ", "<<: ", "'", '"', "\n", "  ",
     "\t", "---\n", "kind: ", "ChaosImageRegistry", "Namespace", "metadata: ", "name: ", "spec: ", "9" * 50,
     ".nan", "\\u0000", "\x00", "\ufeff", "%YAML 1.1\n", "#", "|\n", ">-\n", "~", "null"]
)  # fmt: skip
garbage = st.lists(fragments | st.text(max_size=20), max_size=60).map("".join)
EXAMPLES = settings(
    max_examples=SCALE.pick(150, 4000),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@EXAMPLES
@given(text=garbage, command=st.sampled_from(["validate", "mutate", "explain"]))
def test_generated_garbage_never_breaks_the_program(text: str, command: str) -> None:
    if command == "validate":
        run_cli("generated garbage", ["validate", "-c", "-"], stdin=text)
    elif command == "mutate":
        run_cli("generated garbage", ["mutate", "-c", CONFIG, "-", "-o", "json"], stdin=text)
    else:
        run_cli("generated garbage", ["explain", "-c", "-", "--scope", "acme"], stdin=text)


# --- libyaml and the pure-Python parser give the same values -----------------------------------------------


def big_config(registries: int, namespaces: int) -> str:
    parts = []
    for i in range(registries):
        parts.append(
            "apiVersion: chaosregistry.io/v1alpha1\nkind: ChaosImageRegistry\n"
            f"metadata: {{name: r{i}}}\nspec:\n  scope: {{account: a{i}, organization: o{i}}}\n"
            f"  registry: {{server: 'registry{i}.acme.corp:5000', account: team-{i}, type: Public}}\n"
            "  allowOverrides: true\n  customImages:\n    enabled: false\n"
        )
    for i in range(namespaces):
        parts.append(
            f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-{i}\n  labels:\n"
            f"    chaosregistry.io/account: a{i}\n    chaosregistry.io/organization: o{i}\n"
            "    created: 2026-11-30\n"
        )
    return "---\n".join(parts)


def test_libyaml_and_pure_python_read_the_same_values() -> None:
    # The locked PyYAML wheels carry libyaml: without it this comparison would prove nothing.
    assert len(LOADERS) == 2, "PyYAML was built without libyaml"
    count = SCALE.pick(2_000, 10_000)
    text = big_config(count, count)
    timings = {}
    results = {}
    for loader in LOADERS:
        started = time.perf_counter()
        results[loader.__name__] = parse_documents(text, loader)
        timings[loader.__name__] = time.perf_counter() - started
    values = list(results.values())
    assert values[0] == values[1]
    assert len(values[0]) == 2 * count and values[0][-1]["metadata"]["labels"]["created"] == "2026-11-30"
    for name, seconds in timings.items():
        figures.record(
            SECTION, f"{count:,} registries + {count:,} namespaces, {name} seconds", round(seconds, 2)
        )
    for path in sorted(ROOT.glob("examples/**/*.yaml")):
        text = path.read_text()
        assert parse_documents(text, LOADERS[0]) == parse_documents(text, PurePythonLoader), path


@EXAMPLES
@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=30,
    ),
    flow=st.booleans(),
)
def test_both_parsers_agree_on_generated_documents(value: Any, flow: bool) -> None:
    text = dump_yaml(value, flow)
    expected = [] if value is None else [value]
    for loader in LOADERS:
        assert parse_documents(text, loader) == expected
    figures.add(SECTION, "inputs_tried", 1)
    figures.add(SECTION, "inputs: parser agreement", 1)


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["mutate"], ["serve", "--port", "x"], ["serve", "--port", "70000"], ["nope"]):
        with pytest.raises(SystemExit) as raised:
            exit_code = main(argv, io.StringIO(), io.StringIO())
            raise SystemExit(exit_code)
        captured = capsys.readouterr()
        assert raised.value.code == EXIT_USAGE, argv
        _count("usage", 0.0, " ".join(argv))
        assert captured.err.count("\n") <= 1


DEFAULTS_FIELDS = ["name", "repository", "component", "helperComponent", "helper", "enabled",
                   "matchLabels", "labelsPresent", "components", "server", "account", "type",
                   "secretName", "images", "x"]  # fmt: skip
defaults_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(DEFAULTS_FIELDS) | st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=15,
)


@EXAMPLES
@given(
    override=st.dictionaries(
        st.sampled_from([*builtin_defaults_document(), "x"]), defaults_values, max_size=4
    )
)
def test_generated_defaults_configmaps_never_raise(override: dict[str, Any]) -> None:
    """The ConfigMap is read by the service's watch too: a list as a catalog key once raised TypeError."""
    parsed, problems = parse_defaults_configmap({"data": {"config.yaml": json.dumps(override)}})
    assert (parsed is None) == bool(problems)
    for problem in problems:
        assert "\n" not in problem and len(problem) <= MAX_LINE
    figures.add(SECTION, "inputs_tried", 1)
    figures.add(SECTION, "inputs: generated defaults ConfigMaps", 1)
