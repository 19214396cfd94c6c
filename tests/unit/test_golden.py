"""Golden tests of the `chaos-registry` program on the examples: the outputs users read
(docs/contract.md#the-command-line-program).

For every pod in examples/pods: `mutate` (YAML) and `mutate --patch`; for every namespace in
examples/config/namespaces.yaml: `explain --namespace`; and `validate` of examples/config. Each run's
exit code, stderr and stdout are compared with a file in tests/golden/.

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_golden.py

rewrites the files; review the diff before committing it: these files are the contract.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import yaml

from webhook.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
CONFIG = "examples/config"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _pods() -> list[str]:
    return sorted(path.stem for path in (ROOT / "examples" / "pods").glob("*.yaml"))


def _namespaces() -> list[str]:
    text = (ROOT / CONFIG / "namespaces.yaml").read_text(encoding="utf-8")
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    return [doc["metadata"]["name"] for doc in documents if doc.get("kind") == "Namespace"]


CASES: dict[str, list[str]] = {}
for _pod in _pods():
    CASES[f"mutate/{_pod}.txt"] = ["mutate", "-c", CONFIG, f"examples/pods/{_pod}.yaml"]
    CASES[f"patch/{_pod}.txt"] = ["mutate", "-c", CONFIG, f"examples/pods/{_pod}.yaml", "--patch"]
for _namespace in _namespaces():
    CASES[f"explain/{_namespace}.txt"] = ["explain", "-c", CONFIG, "--namespace", _namespace]
CASES["validate/examples.txt"] = ["validate", "-c", CONFIG]
# `images`: the mirror inputs people feed to skopeo, crane and oras are contracts too.
CASES["images/table.txt"] = ["images", "-c", CONFIG]
CASES["images/json-payments-prod.txt"] = [
    "images",
    "-c",
    CONFIG,
    "--namespace",
    "payments-prod-chaos",
    "-o",
    "json",
]
CASES["images/skopeo-sync.txt"] = ["images", "-c", CONFIG, "-o", "skopeo-sync"]
CASES["images/list-versions.txt"] = [
    "images",
    "-c",
    CONFIG,
    "-o",
    "list",
    "--hce-version",
    "1.50.1",
    "--litmus-version",
    "3.12.0",
]
CASES["images/hce-only.txt"] = ["images", "-c", CONFIG, "--scope", "acme/retail", "--release", "hce"]
CASES["images/bad-version.txt"] = ["images", "-c", CONFIG, "--litmus-version", "3.12/0"]
CASES["images/unknown-release.txt"] = ["images", "-c", CONFIG, "--release", "chaos-mesh"]


def render(argv: list[str]) -> str:
    """The command line, its exit code, stderr and stdout, as one text."""
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out, err)
    return (
        f"$ chaos-registry {' '.join(argv)}\n"
        f"--- exit: {code}\n"
        f"--- stderr\n{err.getvalue()}"
        f"--- stdout\n{out.getvalue()}"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # relative paths in the command line, and so in the messages
    actual = render(CASES[name])
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing: run UPDATE_GOLDEN=1 .venv/bin/python -m pytest {__file__}"
    assert actual == path.read_text(encoding="utf-8")


def test_cases_cover_every_example() -> None:
    assert len([n for n in CASES if n.startswith("mutate/")]) == len(_pods()) >= 9
    assert len([n for n in CASES if n.startswith("explain/")]) == len(_namespaces()) >= 5


def test_no_stale_golden_files() -> None:
    if UPDATE:
        for path in GOLDEN.rglob("*.txt"):
            if str(path.relative_to(GOLDEN)) not in CASES:
                path.unlink()
        return
    stored = {str(path.relative_to(GOLDEN)) for path in GOLDEN.rglob("*.txt")}
    assert stored == set(CASES)
