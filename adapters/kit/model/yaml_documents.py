"""Safe loading of Kubernetes YAML: bounded size, bounded alias expansion, JSON-shaped output.

Manifests come from users (the `custom` operation), from chart templates and from downloaded
sample apps. PyYAML's safe loader shares one node for every alias of an anchor, so a "billion
laughs" document loads quickly but explodes when anything walks it (JSON encoding, apply). We
count how many nodes the aliases would materialise while composing and refuse past a limit,
the way kubectl's YAML library refuses excessive aliasing.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from adapters.kit.model.objects import KubeObject

__all__ = [
    "DEFAULT_MAX_ALIAS_EXPANSIONS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "ManifestError",
    "load_documents",
    "load_mapping",
]

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_ALIAS_EXPANSIONS = 100_000
# Deep enough for real CRD schemas; shallow enough that the recursive composer cannot
# exhaust the Python stack.
DEFAULT_MAX_DEPTH = 128


class ManifestError(ValueError):
    """A manifest cannot be used; the message says what is wrong and what to do."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Limits(yaml.composer.Composer, yaml.constructor.SafeConstructor):
    """Composer/constructor overrides that track nesting depth and the size aliases expand to.

    Composition stays in Python (where the limits are enforced) whichever parser produces the
    events: libyaml's C parser when PyYAML was built with it (an order of magnitude faster on
    large charts), the pure-Python one otherwise.
    """

    max_alias_expansions: int = DEFAULT_MAX_ALIAS_EXPANSIONS
    max_depth: int = DEFAULT_MAX_DEPTH
    max_nodes: int | None = None
    """Nodes a document may hold, aliases counted as what they expand to (None: no limit)."""
    _depth: int
    _expanded: int
    _nodes: int
    _sizes: dict[int, int]

    if TYPE_CHECKING:

        def peek_event(self) -> Any:
            """Provided by whichever parser the concrete loader mixes in."""

        def check_event(self, *choices: Any) -> bool:
            """Provided by whichever parser the concrete loader mixes in."""

    def _reset_limits(self) -> None:
        self._depth = 0
        self._expanded = 0
        self._nodes = 0
        self._sizes = {}

    def compose_document(self) -> Node | None:
        # Limits are per document, like anchors themselves.
        self._expanded = 0
        self._nodes = 0
        self._sizes = {}
        node: Node | None = super().compose_document()
        return node

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node: Node | None = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                raise ManifestError(
                    f"YAML alias *{event.anchor} refers to a node that contains it "
                    f"(line {event.start_mark.line + 1}); recursive aliases are not allowed"
                )
            self._expanded += size
            if self._expanded > self.max_alias_expansions:
                raise ManifestError(
                    f"YAML aliases expand to more than {self.max_alias_expansions} nodes "
                    f"(max_alias_expansions) at line {event.start_mark.line + 1}; this looks "
                    "like a YAML bomb (billion laughs). Write the repeated content out or use "
                    "fewer aliases"
                )
            if self.max_nodes is not None:
                self._count_nodes(event.start_mark.line)
            return node
        self._depth += 1
        self._nodes += 1
        if self.max_nodes is not None:
            self._count_nodes(self.peek_event().start_mark.line)
        try:
            if self._depth > self.max_depth:
                event = self.peek_event()
                mark = event.start_mark
                raise ManifestError(
                    f"YAML nesting deeper than {self.max_depth} levels (max_depth) at line "
                    f"{mark.line + 1}; flatten the document"
                )
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._sizes[id(node)] = 1 + sum(self._sizes.get(id(c), 0) for c in _children(node))
        return node

    def _count_nodes(self, line: int) -> None:
        if self.max_nodes is not None and self._nodes + self._expanded > self.max_nodes:
            raise ManifestError(
                f"YAML holds more than {self.max_nodes} nodes (max_nodes) at line {line + 1}; "
                "send a smaller document"
            )

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping with JSON string keys, refusing duplicates as kubectl does.

        Keys become strings here, not later, so `1` and `true` cannot collide with each
        other in the Python dict. Keys pulled in by a `<<` merge may be overridden.
        """
        explicit = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
        self.flatten_mapping(node)
        merged = len(node.value) - explicit
        mapping: dict[str, Any] = {}
        explicit_keys: set[str] = set()
        for position, (key_node, value_node) in enumerate(node.value):
            line = key_node.start_mark.line + 1
            key = _json_key(self.construct_object(key_node, deep=True), f"line {line}")
            if position >= merged:
                if key in explicit_keys:
                    raise ManifestError(
                        f"duplicate key {key!r} at line {line}; each key may appear once in a "
                        "mapping"
                    )
                explicit_keys.add(key)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


class _PureLoader(_Limits, yaml.SafeLoader):
    """Pure-Python scanner and parser (used when libyaml is not available)."""

    def __init__(self, stream: str) -> None:
        yaml.SafeLoader.__init__(self, stream)
        self._reset_limits()


_BoundedLoader: Any = _PureLoader
if yaml.__with_libyaml__:
    from yaml._yaml import CParser as _CParser

    class _FastLoader(_Limits, _CParser, yaml.resolver.Resolver):
        """libyaml parses events; Python composes them, so every limit still applies."""

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._reset_limits()

    _BoundedLoader = _FastLoader

# Kubernetes reads YAML as JSON: unquoted dates stay strings rather than becoming datetimes.
_BoundedLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _json_shaped(value: Any, where: str) -> Any:
    """Copy a constructed value into fresh JSON-shaped containers.

    Aliases make PyYAML share one Python object between places; a fresh copy keeps a later
    in-place edit (say, setting a namespace) from leaking into every place the alias was used.
    """
    if isinstance(value, dict):
        return {_json_key(k, where): _json_shaped(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_shaped(v, where) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ManifestError(
        f"{where} holds a YAML {type(value).__name__}, which Kubernetes cannot represent; "
        "use plain mappings, lists and scalars"
    )


def _json_key(key: Any, where: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return str(key)
    raise ManifestError(f"{where} has a mapping key that is a {type(key).__name__}; use strings")


def _check_size(text: str, max_bytes: int, source: str) -> None:
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise ManifestError(
            f"{source} is {size} bytes, more than the limit of {max_bytes} bytes (max_bytes); "
            "split it into smaller manifests"
        )


def _compose_all(
    text: str,
    *,
    max_alias_expansions: int,
    max_depth: int,
    source: str,
    max_nodes: int | None = None,
) -> list[Any]:
    """Parse every document into plain Python data, with the limits applied."""
    loader_type = type(
        "_Loader",
        (_BoundedLoader,),
        {
            "max_alias_expansions": max_alias_expansions,
            "max_depth": max_depth,
            "max_nodes": max_nodes,
        },
    )
    loader = loader_type(text)
    documents: list[Any] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            documents.append(loader.construct_document(node))
    except ManifestError as exc:
        raise ManifestError(f"{source}, document {len(documents) + 1}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source} is not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return documents


def load_mapping(
    text: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_alias_expansions: int = DEFAULT_MAX_ALIAS_EXPANSIONS,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_nodes: int | None = None,
    source: str = "the YAML input",
) -> dict[str, Any]:
    """Load a single YAML document that must be a mapping (an index.yaml, a values file)."""
    _check_size(text, max_bytes, source)
    documents = [
        d
        for d in _compose_all(
            text,
            max_alias_expansions=max_alias_expansions,
            max_depth=max_depth,
            max_nodes=max_nodes,
            source=source,
        )
        if d is not None
    ]
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise ManifestError(f"{source} must be exactly one YAML mapping")
    shaped: dict[str, Any] = _json_shaped(documents[0], source)
    return shaped


def load_documents(
    text: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_alias_expansions: int = DEFAULT_MAX_ALIAS_EXPANSIONS,
    max_depth: int = DEFAULT_MAX_DEPTH,
    source: str = "the manifest",
) -> list[KubeObject]:
    """Load multi-document Kubernetes YAML into objects, flattening `kind: List` and `*List`.

    Empty documents are skipped. Every document must be a mapping with string `apiVersion`
    and `kind`; the error names the document (1-based) that is not.
    """
    _check_size(text, max_bytes, source)
    raw = _compose_all(
        text, max_alias_expansions=max_alias_expansions, max_depth=max_depth, source=source
    )
    objects: list[KubeObject] = []
    for number, document in enumerate(raw, start=1):
        if document is None:
            continue
        where = f"{source}, document {number}"
        _flatten(_json_shaped(document, where), where, objects)
    return objects


def _flatten(document: Any, where: str, out: list[KubeObject]) -> None:
    if not isinstance(document, dict):
        raise ManifestError(
            f"{where} is a {_yaml_type(document)}, not a mapping; each YAML document must be "
            "one Kubernetes object (a mapping with apiVersion, kind and metadata)"
        )
    api_version = document.get("apiVersion")
    kind = document.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ManifestError(f"{where} has no kind; every Kubernetes object needs `kind`")
    if not isinstance(api_version, str) or not api_version:
        raise ManifestError(
            f"{where} (kind {kind}) has no apiVersion; every Kubernetes object needs `apiVersion`"
        )
    if kind.endswith("List") and "items" in document:
        items = document["items"]
        if items is None:
            return
        if not isinstance(items, list):
            raise ManifestError(f"{where} is a {kind} whose `items` is not a list")
        for position, item in enumerate(items, start=1):
            _flatten(item, f"{where}, item {position}", out)
        return
    out.append(document)


def _yaml_type(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__
