"""Tests for webhook.core.jsonpatch: RFC 6902 operations and RFC 6901 pointers, as the CLI applies them.

The apiserver applies the webhook's patch with its own implementation; this one must agree with the
RFC on everything the mutator emits, and refuse what does not apply instead of guessing.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from webhook.core.jsonpatch import PatchError, apply_patch

DOCUMENT: dict[str, Any] = {
    "metadata": {"name": "p", "annotations": {"a/b": "1", "m~n": "2"}},
    "spec": {"containers": [{"name": "c", "image": "x"}], "imagePullSecrets": [{"name": "s"}]},
}


@pytest.mark.parametrize(
    ("operation", "check"),
    [
        ({"op": "add", "path": "/metadata/labels", "value": {"k": "v"}}, ("metadata", "labels", {"k": "v"})),
        ({"op": "add", "path": "/metadata/name", "value": "q"}, ("metadata", "name", "q")),  # add replaces
        (
            {"op": "add", "path": "/metadata/annotations/a~1b", "value": "new"},
            ("metadata", "annotations", None),
        ),
        (
            {"op": "replace", "path": "/metadata/annotations/m~0n", "value": "3"},
            ("metadata", "annotations", None),
        ),
        ({"op": "remove", "path": "/metadata/annotations/a~1b"}, ("metadata", "annotations", None)),
    ],
)
def test_object_members(operation: dict[str, Any], check: tuple[str, str, Any]) -> None:
    result = apply_patch(DOCUMENT, [operation])
    parent, key, value = check
    if value is not None:
        assert result[parent][key] == value
    annotations = result["metadata"]["annotations"]
    if operation["path"].endswith("a~1b"):
        if operation["op"] == "remove":
            assert "a/b" not in annotations
        else:
            assert annotations["a/b"] == "new"
    if operation["path"].endswith("m~0n"):
        assert annotations["m~n"] == "3"


def test_array_operations() -> None:
    patch: list[dict[str, Any]] = [
        {"op": "add", "path": "/spec/imagePullSecrets/-", "value": {"name": "t"}},
        {"op": "add", "path": "/spec/imagePullSecrets/0", "value": {"name": "first"}},
        {"op": "replace", "path": "/spec/containers/0/image", "value": "y"},
        {"op": "add", "path": "/spec/containers/1", "value": {"name": "d"}},  # index == length appends
        {"op": "remove", "path": "/spec/imagePullSecrets/1"},
    ]
    result = apply_patch(DOCUMENT, patch)
    assert result["spec"]["imagePullSecrets"] == [{"name": "first"}, {"name": "t"}]
    assert result["spec"]["containers"] == [{"name": "c", "image": "y"}, {"name": "d"}]


def test_the_document_and_values_are_copied() -> None:
    original = copy.deepcopy(DOCUMENT)
    value = {"name": "t"}
    result = apply_patch(DOCUMENT, [{"op": "add", "path": "/spec/imagePullSecrets/-", "value": value}])
    value["name"] = "changed"
    assert original == DOCUMENT
    assert result["spec"]["imagePullSecrets"][-1] == {"name": "t"}
    assert apply_patch(DOCUMENT, []) == DOCUMENT
    assert apply_patch(DOCUMENT, []) is not DOCUMENT


def test_whole_document() -> None:
    assert apply_patch(DOCUMENT, [{"op": "replace", "path": "", "value": {"a": 1}}]) == {"a": 1}
    with pytest.raises(PatchError, match="cannot remove the whole document"):
        apply_patch(DOCUMENT, [{"op": "remove", "path": ""}])


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        ({"op": "add", "path": "metadata"}, "must start with '/'"),
        ({"op": "add", "value": 1}, "has no path"),
        ({"op": "move", "path": "/metadata/name", "from": "/x"}, "unsupported operation 'move'"),
        ({"op": "replace", "path": "/metadata/missing", "value": 1}, "cannot replace missing member"),
        ({"op": "remove", "path": "/metadata/missing"}, "cannot remove missing member"),
        ({"op": "add", "path": "/missing/x", "value": 1}, "member 'missing' does not exist"),
        ({"op": "add", "path": "/spec/containers/2", "value": 1}, "array index 2 is out of range"),
        ({"op": "replace", "path": "/spec/containers/1", "value": 1}, "array index 1 is out of range"),
        ({"op": "replace", "path": "/spec/containers/-", "value": 1}, "'-' is not an array index"),
        ({"op": "add", "path": "/spec/containers/01", "value": 1}, "'01' is not an array index"),
        ({"op": "add", "path": "/spec/containers/x/image", "value": 1}, "'x' is not an array index"),
        ({"op": "add", "path": "/metadata/name/x", "value": 1}, "cannot add to str"),
        ({"op": "add", "path": "/metadata/name/x/y", "value": 1}, "cannot descend into str"),
    ],
)
def test_operations_that_do_not_apply(operation: dict[str, Any], message: str) -> None:
    with pytest.raises(PatchError, match=message.replace("'", ".").replace("-", ".")):
        apply_patch(DOCUMENT, [operation])


def test_patch_error_is_a_value_error() -> None:
    assert issubclass(PatchError, ValueError)
