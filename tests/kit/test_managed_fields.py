"""`managed_fields`: which of one manager's fields differ between a live object and a dry run."""

from __future__ import annotations

from typing import Any

from adapters.kit.model.managed_fields import changed_fields, owned_fields


def _object(spec: dict[str, Any], fields: dict[str, Any], manager: str = "meshplane") -> Any:
    return {
        "metadata": {
            "name": "x",
            "resourceVersion": "7",
            "managedFields": [
                {"manager": manager, "operation": "Apply", "fieldsV1": fields},
                {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:status": {}}},
            ],
        },
        "spec": spec,
        "status": {"ready": True},
    }


CONTAINERS = {
    "f:spec": {
        "f:replicas": {},
        "f:containers": {'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {}}},
        "f:finalizers": {'v:"a"': {}},
    }
}


def test_only_the_managers_fields_are_compared() -> None:
    live = _object({"replicas": 1, "containers": [{"name": "app", "image": "a:1"}]}, CONTAINERS)
    planned = _object({"replicas": 1, "containers": [{"name": "app", "image": "a:2"}]}, CONTAINERS)
    planned["status"] = {"ready": False}  # another manager's field: not ours to report
    planned["metadata"]["resourceVersion"] = "8"
    assert changed_fields(live, planned, "meshplane") == ("spec.containers[name=app].image",)
    assert changed_fields(live, live, "meshplane") == ()
    assert changed_fields(live, planned, "nobody") == ()


def test_a_field_set_or_dropped_counts_and_set_lists_by_value() -> None:
    live = _object({"replicas": 1, "finalizers": ["a"], "containers": []}, CONTAINERS)
    dropped = {"f:spec": {"f:containers": CONTAINERS["f:spec"]["f:containers"]}}
    planned = _object(
        {"finalizers": ["b"], "containers": [{"name": "app", "image": "a:1"}]}, dropped
    )
    assert changed_fields(live, planned, "meshplane") == (
        "spec.containers[name=app]",
        'spec.finalizers["a"]',
        "spec.replicas",
    )
    assert owned_fields(planned, "meshplane") == dropped
