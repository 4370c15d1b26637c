"""Safe YAML loading of user manifests: what kubectl accepts is accepted, bombs are refused."""

from __future__ import annotations

import json
import time

import pytest

from adapters.kit.model.yaml_documents import ManifestError, load_documents, load_mapping
from tests.fixtures_paths import shared_fixtures


def billion_laughs(levels: int = 9) -> str:
    """The classic YAML bomb: 9 levels of 9 aliases each expand to 9**9 strings."""
    lines = [
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata: {name: lol}",
        "data:",
        '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    previous = "a"
    for name in "bcdefghijklmnop"[: levels - 1]:
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\n"


def test_multi_document_skips_empty_documents() -> None:
    text = """
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
---
# only a comment
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: demo}
data: {mode: strict}
"""
    objects = load_documents(text)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Namespace", "demo"),
        ("ConfigMap", "settings"),
    ]


def test_kind_list_and_typed_lists_are_flattened_in_order() -> None:
    text = """
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: ServiceAccount, metadata: {name: one}}
  - apiVersion: v1
    kind: ConfigMapList
    items:
      - {apiVersion: v1, kind: ConfigMap, metadata: {name: two}}
      - {apiVersion: v1, kind: ConfigMap, metadata: {name: three}}
---
apiVersion: v1
kind: Service
metadata: {name: four}
"""
    names = [o["metadata"]["name"] for o in load_documents(text)]
    assert names == ["one", "two", "three", "four"]


def test_non_mapping_list_item_is_named() -> None:
    text = (
        "apiVersion: v1\nkind: List\nitems:\n"
        "  - {apiVersion: v1, kind: Pod, metadata: {name: a}}\n"
        "  - 42\n"
    )
    with pytest.raises(ManifestError, match=r"document 1, item 2 is a number, not a mapping"):
        load_documents(text)


def test_anchors_and_merge_keys_are_allowed_and_unshared() -> None:
    text = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: &labels {app: web, tier: front}
spec:
  selector:
    matchLabels: *labels
  template:
    metadata:
      labels:
        <<: *labels
        tier: edge
"""
    (deployment,) = load_documents(text)
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": "web", "tier": "front"}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "web", "tier": "edge"}
    # An edit through one alias must not show up at the other places the anchor was used.
    deployment["metadata"]["labels"]["extra"] = "x"
    assert "extra" not in deployment["spec"]["selector"]["matchLabels"]


def test_billion_laughs_is_refused_quickly_naming_the_limit() -> None:
    started = time.monotonic()
    with pytest.raises(ManifestError) as caught:
        load_documents(billion_laughs())
    assert time.monotonic() - started < 1.0
    message = str(caught.value)
    assert "max_alias_expansions" in message
    assert "100000" in message
    assert "billion laughs" in message


def test_alias_limit_is_configurable_and_counts_expanded_nodes() -> None:
    # 3 levels: the last key expands to 9*9 = 81 strings plus the lists holding them.
    text = billion_laughs(levels=3)
    objects = load_documents(text)
    assert len(json.dumps(objects)) > 0
    assert len(objects[0]["data"]["c"]) == 9
    with pytest.raises(ManifestError, match="more than 50 nodes"):
        load_documents(text, max_alias_expansions=50)


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(ManifestError, match="recursive aliases"):
        load_documents("apiVersion: v1\nkind: ConfigMap\ndata: &x {a: *x}\n")


def test_deep_nesting_is_refused_without_exhausting_the_stack() -> None:
    depth = 50_000
    text = "apiVersion: v1\nkind: ConfigMap\ndata: " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(ManifestError, match="max_depth"):
        load_documents(text, max_bytes=1_000_000)


def test_oversized_input_is_refused_before_parsing() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata: {blob: '"
        + "x" * 2000
        + "'}\n"
    )
    with pytest.raises(ManifestError, match=r"more than the limit of 1024 bytes \(max_bytes\)"):
        load_documents(text, max_bytes=1024)
    assert load_documents(text, max_bytes=4096)[0]["metadata"]["name"] == "big"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", r"document 1 is a list, not a mapping"),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\njust a string\n",
            r"document 2 is a string",
        ),
        ("metadata: {name: a}\n", r"document 1 has no kind"),
        ("kind: Pod\nmetadata: {name: a}\n", r"document 1 \(kind Pod\) has no apiVersion"),
    ],
)
def test_documents_that_are_not_objects_are_refused_by_index(text: str, expected: str) -> None:
    with pytest.raises(ManifestError, match=expected):
        load_documents(text)


def test_syntax_errors_and_unsafe_tags_are_manifest_errors() -> None:
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_documents("apiVersion: v1\nkind: [unclosed\n")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_documents("apiVersion: v1\nkind: !!python/object:os.system {}\n")


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(ManifestError, match=r"duplicate key 'name' at line 5"):
        load_documents("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\n")


def test_output_is_json_shaped() -> None:
    text = """
apiVersion: v1
kind: ConfigMap
metadata: {name: shapes}
data:
  date: 2024-05-01
  when: 2024-05-01T10:00:00Z
  1: one
  true: yes
binaryData:
  blob: !!binary aGVsbG8=
"""
    (obj,) = load_documents(text)
    assert obj["data"] == {
        "date": "2024-05-01",
        "when": "2024-05-01T10:00:00Z",
        "1": "one",
        "true": True,
    }
    assert obj["binaryData"] == {"blob": "aGVsbG8="}
    json.dumps(obj)


def test_load_mapping_requires_one_mapping() -> None:
    assert load_mapping("apiVersion: v1\nentries: {}\n") == {"apiVersion": "v1", "entries": {}}
    with pytest.raises(ManifestError, match="exactly one YAML mapping"):
        load_mapping("- 1\n")


def test_real_sample_apps_load() -> None:
    fixtures = shared_fixtures()
    bookinfo = load_documents((fixtures / "apps" / "bookinfo.yaml").read_text())
    assert len(bookinfo) == 14
    emojivoto = load_documents((fixtures / "apps" / "emojivoto.yaml").read_text())
    assert len(emojivoto) == 11
    assert emojivoto[0]["kind"] == "Namespace"
    for addon in ("prometheus", "grafana", "kiali", "jaeger"):
        assert load_documents((fixtures / "addons" / f"{addon}.yaml").read_text())
