"""YAML and JSON text into plain Kubernetes values, with limits: what any input file goes through.

Every file the CLI reads (CONFIG, a pod, stdin) and the defaults ConfigMap's `config.yaml` (also
when the service watches it) is read here, so one set of rules holds everywhere:

* at most `MAX_INPUT_BYTES` are read (an endless input such as /dev/zero ends with a message);
* at most `MAX_DEPTH` levels of nesting (a Kubernetes object is a few dozen levels deep at most);
* at most `MAX_VALUES` values once aliases are expanded (an alias bomb of a few KB would otherwise
  grow into gigabytes when printed or copied), and no alias may hold itself;
* only values JSON can hold, as the apiserver reads YAML: strings, integers, finite numbers,
  booleans, null, lists and mappings. Tags such as `!!binary`, `!!set` or `!!timestamp` are
  refused; keys that are numbers, booleans or null become their JSON text, as kubectl does;
* a key given twice in one mapping is refused, as kubectl does;
* an unquoted timestamp stays the string it is (kubectl would send it as written).

libyaml's C parser is used when PyYAML was built with it (about ten times faster on large CONFIGs);
the pure-Python parser gives the same values and the same refusals otherwise.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from typing import Any, ClassVar, cast

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

MAX_INPUT_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 100
MAX_VALUES = 1_000_000
# Values quoted in messages are cut to this many characters, whatever their length.
QUOTE_MAX = 200
_MERGE_TAG = "tag:yaml.org,2002:merge"
_LIBYAML_DEPTH_PROBLEM = "exceeded maximum nesting depth"


class DocumentError(ValueError):
    """A document that cannot be read; the message is one line, without the file name."""


def quote(value: object) -> str:
    """`repr` of a value cut to QUOTE_MAX characters: one line, whatever the value holds."""
    if not isinstance(value, str):
        text = repr(value)
        return text if len(text) <= QUOTE_MAX else text[: QUOTE_MAX - 3] + "..."
    if len(value) > QUOTE_MAX:
        return repr(value[: QUOTE_MAX - 3]) + f"... ({len(value)} characters)"
    return repr(value)


def shown(text: object) -> str:
    """Text as it is when short and printable (names in messages), else quoted and cut."""
    if isinstance(text, str) and len(text) <= QUOTE_MAX and text.isprintable():
        return text
    return quote(text)


class _KubernetesResolver(Resolver):
    pass


# Unquoted timestamps stay strings (kubectl sends them as written): drop the implicit resolver only.
_KubernetesResolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()
}
# kubectl reads YAML 1.1 as go-yaml does, where `y` and `n` are booleans too (PyYAML leaves them
# strings): `name: n` is refused by kubectl, so it must not pass here.
_KubernetesResolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN")
)


def _json_key(key: Any) -> str | None:
    """A mapping key as JSON text, as kubectl converts YAML (`1` is "1", `true` is "true")."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int) or (isinstance(key, float) and math.isfinite(key)):
        return str(key)
    return None


class _KubernetesDumper(yaml.SafeDumper):
    """Quotes what kubectl would read as something else (`y`, `n`), as it quotes `yes` already."""


_KubernetesDumper.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))


def dump_yaml(document: Any, flow: bool = False) -> str:
    return yaml.dump(document, Dumper=_KubernetesDumper, sort_keys=False, default_flow_style=flow)


class _KubernetesConstructor(SafeConstructor):
    bool_values: ClassVar[dict[str, bool]] = {**SafeConstructor.bool_values, "y": True, "n": False}

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        """Keys become JSON text; a key written twice in one mapping is refused (kubectl refuses it)."""
        if not isinstance(node, MappingNode):
            raise ConstructorError(
                None, None, f"expected a mapping node, but found {type(node).__name__}", node.start_mark
            )
        explicit = {id(key_node) for key_node, _ in node.value if key_node.tag != _MERGE_TAG}
        self.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        first_marks: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            text = _json_key(key)
            if text is None:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"key {quote(key)} is not a string, number or boolean",
                    key_node.start_mark,
                )
            if id(key_node) in explicit:
                if text in first_marks:
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {quote(text)} (first at line {first_marks[text].line + 1})",
                        key_node.start_mark,
                    )
                first_marks[text] = key_node.start_mark
            mapping[text] = self.construct_object(value_node, deep=deep)
        return mapping


class _DepthLimitedComposer(Composer):
    """The pure-Python composer recurses per level: stop at MAX_DEPTH, before Python's own limit."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = cast(Parser, self).peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            node = super().compose_node(parent, index)
            assert node is not None
            return node
        finally:
            self._depth -= 1


class PurePythonLoader(
    Reader, Scanner, Parser, _DepthLimitedComposer, _KubernetesConstructor, _KubernetesResolver
):
    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


LOADERS: list[type] = [PurePythonLoader]
try:
    from yaml.cyaml import CParser  # type: ignore[attr-defined]

    class LibyamlLoader(CParser, _KubernetesConstructor, _KubernetesResolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    LOADERS.insert(0, LibyamlLoader)
except ImportError:  # PyYAML built without libyaml
    pass

DEFAULT_LOADER: type = LOADERS[0]


def yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if _LIBYAML_DEPTH_PROBLEM in problem:
        problem = f"nested more than {MAX_DEPTH} levels deep"
    if mark is not None:
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"invalid YAML: {problem}"


def parse_documents(text: str, loader: type | None = None) -> list[Any]:
    """Every non-empty document of `text`, as plain JSON values; raises DocumentError.

    Text that libyaml refuses is read again by the pure-Python parser, so that messages (wording,
    line and column) are the same whichever parser PyYAML has: only the error path pays for it.
    """
    chosen = loader or DEFAULT_LOADER
    try:
        return _parse(text, chosen)
    except DocumentError:
        if chosen is PurePythonLoader:
            raise
        return _parse(text, PurePythonLoader)


def _parse(text: str, loader: type) -> list[Any]:
    documents: list[Any] = []
    try:
        for document in yaml.load_all(text, Loader=loader):
            if document is not None:
                documents.append(plain_value(document))
    except yaml.YAMLError as error:
        raise DocumentError(yaml_problem(error)) from None
    except RecursionError:
        raise DocumentError(f"invalid YAML: nested more than {MAX_DEPTH} levels deep") from None
    except DocumentError:
        raise
    except ValueError as error:
        if "integer string conversion" in str(error):  # int() refuses more than 4300 digits
            limit = sys.get_int_max_str_digits()
            raise DocumentError(f"invalid YAML: an integer of more than {limit} digits") from None
        raise DocumentError(f"invalid YAML: {' '.join(str(error).split())[:QUOTE_MAX]}") from None
    return documents


def _key_text(key: Any, path: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float) and not (isinstance(key, float) and not math.isfinite(key)):
        return str(key)
    raise DocumentError(f"{path or 'document'}: key {quote(key)} is not a string, number or boolean")


_TAG_OF: list[tuple[type, str]] = [(bytes, "!!binary"), (set, "!!set"), (tuple, "!!python/tuple")]


def _scalar_problem(value: Any) -> str | None:
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a number JSON can hold"
    for kind, tag in _TAG_OF:
        if isinstance(value, kind):
            return f"{tag} values are not allowed (the apiserver reads JSON values only)"
    return (
        f"{type(value).__name__} values (e.g. !!timestamp) are not allowed "
        "(the apiserver reads JSON values only)"
    )


def plain_value(document: Any) -> Any:
    """`document` checked (depth, size after alias expansion, cycles, JSON types) and with its keys as
    strings; raises DocumentError naming the path. Iterative: deep input cannot exhaust the stack."""
    if not isinstance(document, dict | list):
        problem = _scalar_problem(document)
        if problem:
            raise DocumentError(f"document: {problem}")
        return document
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()
    alive: list[Any] = []  # keeps every measured container alive, so that ids stay unique
    stack: list[tuple[Any, int, Callable[[], str], bool]] = [(document, 1, lambda: "", False)]
    while stack:
        value, depth, path_of, finished = stack.pop()
        ident = id(value)
        if finished:
            open_ids.discard(ident)
            children = value.values() if isinstance(value, dict) else value
            size = 1 + sum(sizes[id(c)] if isinstance(c, dict | list) else 1 for c in children)
            if size > MAX_VALUES:
                raise DocumentError(
                    f"{path_of() or 'document'}: holds more than {MAX_VALUES:,} values once its aliases are "
                    "expanded"
                )
            sizes[ident] = size
            continue
        if ident in sizes:
            continue  # an alias of a value already measured
        if ident in open_ids:
            raise DocumentError(f"{path_of() or 'document'}: an alias refers to a value that holds it")
        if depth > MAX_DEPTH:
            raise DocumentError(f"{path_of() or 'document'}: nested more than {MAX_DEPTH} levels deep")
        open_ids.add(ident)
        alive.append(value)
        stack.append((value, depth, path_of, True))
        if isinstance(value, dict):
            if not all(isinstance(key, str) for key in value):
                items = list(value.items())
                value.clear()
                for key, item in items:
                    text = _key_text(key, path_of())
                    if text in value:
                        raise DocumentError(f"{path_of() or 'document'}: duplicate key {quote(text)}")
                    value[text] = item
            entries: Any = value.items()
        else:
            entries = enumerate(value)
        for key, item in entries:
            child_path = _child_path(path_of, key)
            if isinstance(item, dict | list):
                stack.append((item, depth + 1, child_path, False))
            elif (problem := _scalar_problem(item)) is not None:
                raise DocumentError(f"{child_path()}: {problem}")
    return document


def _child_path(parent: Callable[[], str], key: str | int) -> Callable[[], str]:
    def path() -> str:
        base = parent()
        if isinstance(key, int):
            return f"{base}[{key}]"
        part = key if len(key) <= 60 and key.isprintable() else quote(key)
        return f"{base}.{part}" if base else part

    return path
