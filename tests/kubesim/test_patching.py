"""Patch formats and field sets, without a server (kubesim's own functions; the same patches
go to both servers in test_crud and test_apply)."""

from __future__ import annotations

import pytest

from kubesim.errors import ApiError
from kubesim.fieldsets import field_values, from_fields_v1, remove_path, to_fields_v1
from kubesim.patching import apply_json_patch, apply_merge_patch, apply_strategic_merge_patch
from kubesim.selectors import labels_match, parse_label_selector

POD_SPEC = {
    "spec": {
        "containers": [
            {
                "name": "a",
                "image": "a:1",
                "env": [{"name": "X", "value": "1"}],
                "ports": [{"containerPort": 80}],
            },
            {"name": "b", "image": "b:1"},
        ]
    },
    "metadata": {"finalizers": ["one"]},
}


def test_strategic_merge_patch_directives() -> None:
    patch = {
        "metadata": {"finalizers": ["two"]},
        "spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}, {"name": "c"}],
            "containers": [
                {
                    "name": "a",
                    "env": [{"name": "Y", "value": "2"}],
                    "$setElementOrder/env": [{"name": "Y"}, {"name": "X"}],
                },
                {"name": "c", "image": "c:1"},
            ],
        },
    }
    out = apply_strategic_merge_patch(POD_SPEC, patch, "Pod")
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "a", "c"]
    a = out["spec"]["containers"][1]
    assert [e["name"] for e in a["env"]] == ["Y", "X"]
    assert a["image"] == "a:1"
    # the patch's items first, then the server-only ones (as the real apiserver orders them)
    assert out["metadata"]["finalizers"] == ["two", "one"]
    assert "$setElementOrder/containers" not in out["spec"]
    replaced = apply_strategic_merge_patch(
        POD_SPEC,
        {"spec": {"containers": [{"$patch": "replace"}, {"name": "z", "image": "z"}]}},
        "Pod",
    )
    assert replaced["spec"]["containers"] == [{"name": "z", "image": "z"}]
    deleted = apply_strategic_merge_patch(
        POD_SPEC,
        {
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["one"]},
            "spec": {"$patch": "delete"},
        },
        "Pod",
    )
    assert deleted == {"metadata": {"finalizers": []}}
    retained = apply_strategic_merge_patch(
        {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
        "Deployment",
    )
    assert retained == {"spec": {"strategy": {"type": "Recreate"}}}


def test_merge_and_json_patch() -> None:
    assert apply_merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None}, "l": [2]}) == {
        "a": {"c": 2},
        "l": [2],
    }
    doc = {"a": [1, 2], "b": {"c~/d": 1}}
    out = apply_json_patch(
        doc,
        [
            {"op": "add", "path": "/a/-", "value": 3},
            {"op": "remove", "path": "/b/c~0~1d"},
            {"op": "copy", "from": "/a/0", "path": "/b/x"},
            {"op": "move", "from": "/a/1", "path": "/m"},
            {"op": "test", "path": "/m", "value": 2},
        ],
    )
    assert out == {"a": [1, 3], "b": {"x": 1}, "m": 2}
    assert doc == {"a": [1, 2], "b": {"c~/d": 1}}  # the original is untouched
    with pytest.raises(ApiError):
        apply_json_patch(doc, [{"op": "replace", "path": "/nope", "value": 1}])


def test_field_sets_round_trip() -> None:
    values = field_values(POD_SPEC, "Pod", with_status=False)
    paths = set(values)
    assert (
        "f:spec",
        "f:containers",
        'k:{"name":"a"}',
        "f:ports",
        'k:{"containerPort":80,"protocol":"TCP"}',
        "f:containerPort",
    ) in paths
    assert ("f:metadata", "f:finalizers", 'v:"one"') in paths
    tree = to_fields_v1(paths)
    assert tree["f:spec"]["f:containers"]['k:{"name":"b"}'] == {
        ".": {},
        "f:image": {},
        "f:name": {},
    }
    assert from_fields_v1(tree) == paths
    obj = {"spec": {"containers": [dict(c) for c in POD_SPEC["spec"]["containers"]]}}
    remove_path(obj, ("f:spec", "f:containers", 'k:{"name":"a"}'))
    assert [c["name"] for c in obj["spec"]["containers"]] == ["b"]


def test_label_selector_grammar() -> None:
    reqs = parse_label_selector("env in (prod, staging),tier!=db,!legacy,app")
    assert labels_match(reqs, {"env": "prod", "tier": "web", "app": "x"})
    assert not labels_match(reqs, {"env": "prod", "tier": "web", "app": "x", "legacy": "1"})
    assert not labels_match(reqs, {"env": "dev", "app": "x"})
    with pytest.raises(ApiError):
        parse_label_selector("a in b")
