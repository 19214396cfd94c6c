"""RFC 6901 JSON Pointer escaping (the mutator's and the writer's patches), and applying an
RFC 6902 JSON Patch (the CLI's mutated output, the kopf engine, tests).

Only what the mutator emits needs to work, but the operations follow the RFC: `add` on an existing
member replaces it, `-` appends to an array, pointers unescape `~1` and `~0`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any


class PatchError(ValueError):
    """A patch operation that does not apply to the document."""


def escape_pointer(token: str) -> str:
    """RFC 6901: `~` and `/` inside one reference token (a label key in a path, say)."""
    return token.replace("~", "~0").replace("/", "~1")


def unescape_pointer(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"JSON pointer {pointer!r} must start with '/'")
    return [unescape_pointer(token) for token in pointer[1:].split("/")]


def _index(container: list[Any], token: str, allow_end: bool) -> int:
    if allow_end and token == "-":
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"{token!r} is not an array index")
    index = int(token)
    if index > len(container) or (index == len(container) and not allow_end):
        raise PatchError(f"array index {index} is out of range")
    return index


def _parent(document: Any, tokens: list[str]) -> Any:
    node = document
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"member {token!r} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, allow_end=False)]
        else:
            raise PatchError(f"cannot descend into {type(node).__name__} at {token!r}")
    return node


def apply_patch(document: Any, patch: Iterable[dict[str, Any]]) -> Any:
    """Return a patched deep copy of `document`; raises PatchError when an operation does not apply."""
    return apply_patch_in_place(copy.deepcopy(document), patch)


def apply_patch_in_place(document: Any, patch: Iterable[dict[str, Any]]) -> Any:
    """Patch `document` itself and return the (possibly replaced) root."""
    result = document
    for operation in patch:
        op, path = operation.get("op"), operation.get("path")
        if not isinstance(path, str):
            raise PatchError(f"operation {operation!r} has no path")
        tokens = _tokens(path)
        if not tokens:
            if op in ("add", "replace"):
                result = copy.deepcopy(operation["value"])
                continue
            raise PatchError(f"cannot {op} the whole document")
        parent, last = _parent(result, tokens), tokens[-1]
        if op == "add":
            value = copy.deepcopy(operation["value"])
            if isinstance(parent, dict):
                parent[last] = value
            elif isinstance(parent, list):
                parent.insert(_index(parent, last, allow_end=True), value)
            else:
                raise PatchError(f"cannot add to {type(parent).__name__} at {path}")
        elif op == "replace":
            value = copy.deepcopy(operation["value"])
            if isinstance(parent, dict):
                if last not in parent:
                    raise PatchError(f"cannot replace missing member at {path}")
                parent[last] = value
            elif isinstance(parent, list):
                parent[_index(parent, last, allow_end=False)] = value
            else:
                raise PatchError(f"cannot replace in {type(parent).__name__} at {path}")
        elif op == "remove":
            if isinstance(parent, dict):
                if last not in parent:
                    raise PatchError(f"cannot remove missing member at {path}")
                del parent[last]
            elif isinstance(parent, list):
                del parent[_index(parent, last, allow_end=False)]
            else:
                raise PatchError(f"cannot remove from {type(parent).__name__} at {path}")
        else:
            raise PatchError(f"unsupported operation {op!r}")
    return result
