"""`chaos-registry validate` says what the apiserver says: the same documents, the same verdict.

Each document goes to the real kube-apiserver with `kubectl apply --dry-run=server` (kubectl's own
client-side checks included, such as duplicate keys) and to `validate`; both must accept it or both
must refuse it. The refusals cover duplicate keys, strings and numbers where the CRD has a boolean,
object names, label keys and values, annotation values; the acceptances keep `validate` from
refusing what the apiserver takes (dotted names, prefixed keys, empty label values).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from controlplane import ControlPlane
from tests.reliability import figures
from tests.unit.test_hostile_inputs import APISERVER_RULES, REGISTRY
from webhook.cli.main import EXIT_BAD_INPUT, EXIT_OK, main

ACCEPTED = {
    "plain registry": REGISTRY,
    "dotted registry name": REGISTRY.replace("name: acme}", "name: acme.retail-1}"),
    "registry name of 253 characters": REGISTRY.replace(
        "name: acme}", f"name: {'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 61}}}"
    ),
    "boolean true": REGISTRY + "  allowOverrides: true\n  customImages: {enabled: false}\n",
    "namespace of 63 characters": f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {'a' * 63}}}\n",
    "prefixed label key, empty value": (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n"
        "  labels: {example.com/a_b.c: '', chaosregistry.io/account: A_b.c-9}\n"
    ),
    "label value of 63 characters": (
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: {{a: {'b' * 63}}}\n"
    ),
    "annotations of any text": (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n"
        "  annotations: {a/b: 'x y: [z]', c: ''}\n"
    ),
    "yes and y quoted": (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: {a: 'y', b: 'yes'}\n"
    ),
    "keys kubectl turns into text": (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  annotations: {1: a, true: b}\n"
    ),
}
CASES = {**{name: (text, False) for name, (text, _) in APISERVER_RULES.items()},
         **{name: (text, True) for name, text in ACCEPTED.items()}}  # fmt: skip


def code_of(path: Path) -> int:
    return main(["validate", "-c", str(path)], io.StringIO(), io.StringIO())


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_agrees_with_the_apiserver(
    control_plane: ControlPlane, crd: None, tmp_path: Path, case: str
) -> None:
    text, accepted = CASES[case]
    path = tmp_path / "document.yaml"
    path.write_text(text)
    applied = control_plane.kubectl("apply", "--dry-run=server", "-f", str(path), check=False)
    out, err = io.StringIO(), io.StringIO()
    code = main(["validate", "-c", str(path)], out, err)
    figures.add("validate against the apiserver", "inputs_tried", 1)
    if case.startswith("duplicate"):
        # kubectl takes the last of two equal keys without a word; validate refuses them on purpose
        # (one of the two values is a mistake), so here it is stricter than the apiserver.
        accepted = True
        figures.add("validate against the apiserver", "stricter on purpose (duplicate keys)", 1)
        assert code_of(path) == EXIT_BAD_INPUT
    assert (applied.returncode == 0) == accepted, f"apiserver: {applied.stdout}{applied.stderr}"
    if case.startswith("duplicate"):
        return
    assert code == (EXIT_OK if accepted else EXIT_BAD_INPUT), err.getvalue()
    figures.add("validate against the apiserver", "agreements", 1)
