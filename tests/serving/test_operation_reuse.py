"""The one same-operation-id rule the adapter runner and the coordinator share."""

from __future__ import annotations

import pytest

from serving.operation_reuse import RequestIdentity, custom_body_digest, reuse_difference

RECORDED = RequestIdentity(
    mesh="istio",
    operation="install",
    namespace="istio-system",
    mesh_version="1.29.6",
    parameters={"profile": "demo", "replicas": "1"},
    custom_body_sha256="",
    clusters=("default",),
)


def sent(**changes: object) -> RequestIdentity:
    fields: dict[str, object] = {"mesh": "istio", "operation": "install", "clusters": ()}
    fields.update(changes)
    return RequestIdentity(**fields)  # type: ignore[arg-type]


def test_empty_fields_mean_as_before_and_defaults_fill_parameters() -> None:
    same = sent(parameters={"profile": "demo"})
    assert (
        reuse_difference(
            RECORDED, same, parameter_defaults={"replicas": "1"}, default_clusters=("default",)
        )
        is None
    )
    explicit = sent(
        namespace="istio-system",
        mesh_version="1.29.6",
        parameters={"profile": "demo", "replicas": "1"},
        clusters=("default",),
    )
    assert reuse_difference(RECORDED, explicit) is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"mesh": "linkerd"}, "mesh"),
        ({"operation": "bookinfo"}, "operation"),
        ({"delete": True}, "delete"),
        ({"namespace": "other"}, "namespace"),
        ({"mesh_version": "1.30.0"}, "mesh_version"),
        ({"parameters": {"profile": "minimal", "replicas": "1"}}, "parameters.profile"),
        ({"parameters": {"profile": "demo"}}, "parameters.replicas"),  # no default this time
        ({"custom_body_sha256": custom_body_digest("kind: X")}, "custom_body"),
        ({"clusters": ("east", "west")}, "clusters"),
    ],
)
def test_each_compared_field_is_named(change: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"parameters": {"profile": "demo", "replicas": "1"}}
    base.update(change)
    difference = reuse_difference(RECORDED, sent(**base), default_clusters=("default",))
    assert difference is not None and difference.field == field
    assert "this request has" in difference.describe()


def test_unknown_digest_and_unknown_default_cluster_are_not_held_against_a_request() -> None:
    recorded = RequestIdentity(
        mesh="istio", operation="install", custom_body_sha256=None, clusters=("default",)
    )
    assert reuse_difference(recorded, sent(custom_body_sha256=custom_body_digest("a"))) is None
    two = RequestIdentity(mesh="istio", operation="install", clusters=("a", "b"))
    difference = reuse_difference(two, sent())
    assert difference is not None and difference.field == "clusters"


def test_long_values_are_cut_in_the_message() -> None:
    difference = reuse_difference(RECORDED, sent(namespace="n" * 5000))
    assert difference is not None and len(difference.describe()) < 250
