"""Custom resources are pruned, defaulted and validated by their CRD version's schema."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, dynamic

from kubesim.harness import RunningSim
from tests.kubesim.servers import ApiServer
from tests.kubesim.support import create_crd, raw_request, run_kubectl

GROUP = "schema.example.com"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "metadata": {"type": "object"},  # as some generators write it: metadata is not pruned
        "spec": {
            "type": "object",
            "required": ["mode"],
            "properties": {
                "mode": {"type": "string", "enum": ["STRICT", "PERMISSIVE", "DISABLE"]},
                "host": {"type": "string", "pattern": "^[a-z0-9.-]+$", "maxLength": 20},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                "ratio": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                "port": {
                    "x-kubernetes-int-or-string": True,
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                },
                "timeout": {"type": "string", "default": "5s"},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "tags": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "x-kubernetes-list-type": "set",
                    "maxItems": 3,
                },
                "http": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "route": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["destination"],
                                    "properties": {
                                        "destination": {
                                            "type": "object",
                                            "required": ["host"],
                                            "properties": {
                                                "host": {"type": "string"},
                                                "subset": {"type": "string"},
                                            },
                                        },
                                        "weight": {
                                            "type": "integer",
                                            "format": "int32",
                                            "minimum": 0,
                                            "maximum": 100,
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
                # Istio's way of saying "at most one of credentialName and certificate"
                "tls": {
                    "type": "object",
                    "properties": {
                        "credentialName": {"type": "string"},
                        "certificate": {"type": "string"},
                        "mode": {"type": "string", "default": "SIMPLE"},
                    },
                    "oneOf": [
                        {
                            "not": {
                                "anyOf": [
                                    {"required": ["credentialName"]},
                                    {"required": ["certificate"]},
                                ]
                            }
                        },
                        {"required": ["credentialName"]},
                        {"required": ["certificate"]},
                    ],
                },
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "x-kubernetes-preserve-unknown-fields": True,
                },
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "phase": {"type": "string", "enum": ["Ready", "Failed"]},
                "observed": {"type": "integer"},
            },
        },
    },
}

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": SCHEMA},
            }
        ],
    },
}


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"mode": "STRICT", **spec},
    }


def call(
    sim: ApiServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    query: dict[str, str] | None = None,
) -> tuple[int, Any, list[str]]:
    """One request: (status, decoded body, Warning headers)."""
    warnings: list[str] = []
    status, answer = raw_request(
        sim, method, path, body, content_type=content_type, query=query, warnings=warnings
    )
    return status, answer, warnings


def merge_patch(
    sim: ApiServer, name: str, patch: dict[str, Any], **query: str
) -> tuple[int, Any, list[str]]:
    return call(
        sim,
        "PATCH",
        f"{base(sim)}/{name}",
        patch,
        content_type="application/merge-patch+json",
        query=query or None,
    )


def causes(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["reason"], c["field"]) for c in body["details"]["causes"]]


@pytest.fixture(scope="module")
def sim(module_server: ApiServer) -> Iterator[ApiServer]:
    """The module's server with the Widget CRD (its own group on the real one: deleted after)."""
    create_crd(module_server, CRD)
    yield module_server
    call(module_server, "DELETE", f"{CRDS}/{CRD['metadata']['name']}")


def base(sim: ApiServer) -> str:
    """The widgets of the module's namespace."""
    return f"/apis/{GROUP}/v1/namespaces/{sim.namespace}/widgets"


def create(sim: ApiServer, obj: dict[str, Any], **query: str) -> tuple[int, Any, list[str]]:
    call(sim, "DELETE", f"{base(sim)}/{obj['metadata']['name']}")
    return call(sim, "POST", base(sim), obj, query=query or None)


def test_a_valid_widget_is_stored_with_defaults(sim: ApiServer) -> None:
    status, body, warnings = create(
        sim,
        widget(
            "ok",
            host="web.default",
            replicas=3,
            ratio=0.5,
            port="http",
            tags=["a", "b"],
            labels={"app": "web"},
            http=[{"name": "r", "route": [{"destination": {"host": "a"}, "weight": 100}]}],
            tls={"credentialName": "cert"},
        ),
    )
    assert status == 201, body
    assert warnings == []
    assert body["metadata"]["uid"] and body["metadata"]["name"] == "ok"
    assert body["spec"]["timeout"] == "5s"  # default of a missing field
    assert body["spec"]["tls"] == {"credentialName": "cert", "mode": "SIMPLE"}
    assert "extra" not in body["spec"]  # no defaults for absent objects


def test_wrong_type(sim: ApiServer) -> None:
    status, body, _ = create(sim, widget("w-type", replicas="three"))
    assert status == 422 and body["reason"] == "Invalid"
    assert causes(body) == [("FieldValueTypeInvalid", "spec.replicas")]
    assert body["details"]["causes"][0]["message"] == (
        'Invalid value: "string": spec.replicas in body must be of type integer: "string"'
    )
    assert body["message"].startswith(
        f'Widget.{GROUP} "w-type" is invalid: spec.replicas: Invalid value: "string"'
    )


def test_missing_required_enum_pattern_and_bounds_together(sim: ApiServer) -> None:
    obj = widget(
        "w-many", host="Not_A_Host", replicas=0, ratio=0, tags=["a", "a", ""], labels={"app": 1}
    )
    del obj["spec"]["mode"]
    status, body, _ = create(sim, obj)
    assert status == 422
    found = causes(body)
    assert ("FieldValueRequired", "spec.mode") in found
    assert ("FieldValueInvalid", "spec.host") in found
    assert ("FieldValueInvalid", "spec.replicas") in found
    assert ("FieldValueInvalid", "spec.ratio") in found
    assert ("FieldValueDuplicate", "spec.tags[1]") in found
    assert ("FieldValueInvalid", "spec.tags[2]") in found
    assert ("FieldValueTypeInvalid", "spec.labels.app") in found  # additionalProperties
    messages = {c["field"]: c["message"] for c in body["details"]["causes"]}
    assert messages["spec.host"] == (
        "Invalid value: \"Not_A_Host\": spec.host in body should match '^[a-z0-9.-]+$'"
    )
    assert messages["spec.replicas"].endswith("should be greater than or equal to 1")
    assert messages["spec.ratio"].endswith("should be greater than 0")

    status, body, _ = create(sim, widget("w-enum", mode="MUTUAL", tags=["a", "b", "c", "d"]))
    assert status == 422
    messages = {c["field"]: c["message"] for c in body["details"]["causes"]}
    # (in no particular order: the real server's differs from kubesim's)
    assert sorted(causes(body)) == [
        ("FieldValueNotSupported", "spec.mode"),
        ("FieldValueTooMany", "spec.tags"),
    ]
    assert messages["spec.mode"] == (
        'Unsupported value: "MUTUAL": supported values: "STRICT", "PERMISSIVE", "DISABLE"'
    )
    assert messages["spec.tags"] == "Too many: 4: must have at most 3 items"


def test_one_of_makes_fields_mutually_exclusive(sim: ApiServer) -> None:
    for tls in ({}, {"credentialName": "c"}, {"certificate": "pem"}):
        status, body, _ = create(sim, widget("w-tls", tls=tls))
        assert status == 201, (tls, body)
    status, body, _ = create(sim, widget("w-tls", tls={"credentialName": "c", "certificate": "p"}))
    assert status == 422
    # the apiserver names no field (`<nil>`), only the schema's path in the message
    assert causes(body) == [("FieldValueInvalid", "<nil>")]
    assert body["details"]["causes"][0]["message"] == (
        'Invalid value: "": "spec.tls" must validate one and only one schema (oneOf). '
        "Found 2 valid alternatives"
    )


def test_int_or_string(sim: ApiServer) -> None:
    for port in (8080, "http"):
        status, body, _ = create(sim, widget("w-port", port=port))
        assert status == 201, body
        assert body["spec"]["port"] == port
    for port in (True, 1.5, ["x"]):
        status, body, _ = create(sim, widget("w-port", port=port))
        assert status == 422, port
        assert causes(body)[0] == ("FieldValueTypeInvalid", "spec.port")


def test_preserve_unknown_fields_and_embedded_resources(sim: ApiServer) -> None:
    extra = {"anything": {"deep": [1, {"x": "y"}]}}
    template = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"a": 1}}
    status, body, warnings = create(sim, widget("w-extra", extra=extra, template=template))
    assert status == 201, body
    assert warnings == []
    assert body["spec"]["extra"] == extra
    assert body["spec"]["template"] == template
    status, body, _ = create(sim, widget("w-extra", template={"metadata": {"name": "p"}}))
    assert status == 422
    assert causes(body) == [
        ("FieldValueRequired", "spec.template.apiVersion"),
        ("FieldValueRequired", "spec.template.kind"),
    ]


def test_nested_arrays_of_objects(sim: ApiServer) -> None:
    http = [
        {
            "route": [
                {"destination": {"host": "a"}, "weight": 20},
                {"destination": {"host": "b", "subset": 2}, "weight": 200},
            ]
        },
        {"route": [{"weight": 1}]},
    ]
    status, body, _ = create(sim, widget("w-http", http=http))
    assert status == 422
    assert sorted(causes(body)) == [  # (the order is the server's own)
        ("FieldValueInvalid", "spec.http[0].route[1].weight"),
        ("FieldValueRequired", "spec.http[1].route[0].destination"),
        ("FieldValueTypeInvalid", "spec.http[0].route[1].destination.subset"),
    ]
    messages = {c["field"]: c["message"] for c in body["details"]["causes"]}
    assert messages["spec.http[0].route[1].weight"] == (
        "Invalid value: 200: spec.http[0].route[1].weight in body should be less than or "
        "equal to 100"
    )


def test_unknown_fields_are_pruned_with_a_warning_by_default(sim: ApiServer) -> None:
    obj = widget("w-prune", foo=1, http=[{"route": [{"destination": {"host": "a", "port": 1}}]}])
    obj["extraTop"] = True
    status, body, warnings = create(sim, obj)
    assert status == 201, body
    assert sorted(warnings) == sorted(
        [
            '299 - "unknown field \\"extraTop\\""',
            '299 - "unknown field \\"spec.foo\\""',
            '299 - "unknown field \\"spec.http[0].route[0].destination.port\\""',
        ]
    )
    assert "foo" not in body["spec"] and "extraTop" not in body
    assert body["spec"]["http"][0]["route"][0]["destination"] == {"host": "a"}
    _, stored, _ = call(sim, "GET", f"{base(sim)}/w-prune")
    assert "foo" not in stored["spec"]
    # a merge patch that adds an unknown field: pruned again, warned again, nothing written
    status, patched, warnings = merge_patch(sim, "w-prune", {"spec": {"bar": 2}})
    assert status == 200 and warnings == ['299 - "unknown field \\"spec.bar\\""']
    assert patched["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


def test_ignore_prunes_silently(sim: ApiServer) -> None:
    status, body, warnings = create(sim, widget("w-ignore", foo=1), fieldValidation="Ignore")
    assert status == 201 and warnings == []
    assert "foo" not in body["spec"]


def test_strict_refuses_unknown_fields(sim: ApiServer) -> None:
    status, body, _ = create(sim, widget("w-strict", foo=1, bar=2), fieldValidation="Strict")
    assert status == 400 and body["reason"] == "BadRequest"
    assert body["message"] == (
        'Widget in version "v1" cannot be handled as a Widget: strict decoding error: '
        'unknown field "spec.bar", unknown field "spec.foo"'
    )
    assert "details" not in body
    assert call(sim, "GET", f"{base(sim)}/w-strict")[0] == 404
    create(sim, widget("w-strict"))
    status, body, _ = call(
        sim,
        "PATCH",
        f"{base(sim)}/w-strict",
        [{"op": "add", "path": "/spec/foo", "value": 1}],
        content_type="application/json-patch+json",
        query={"fieldValidation": "Strict"},
    )
    # the real server reports a patch's unknown field as an invalid `patch` (422, the patched
    # object quoted whole); kubesim as the decoding error above (400): docs/kubesim.md
    assert status == (422 if sim.real else 400)
    assert (
        'unknown field \\"spec.foo\\"' in body["message"]
        or 'unknown field "spec.foo"' in body["message"]
    )
    status, body, _ = call(sim, "POST", base(sim), widget("w-x"), query={"fieldValidation": "Loud"})
    assert (status, body["reason"]) == (422, "Invalid")
    assert causes(body) == [("FieldValueNotSupported", "fieldValidation")]


def test_every_write_path_validates(sim: ApiServer) -> None:
    create(sim, widget("w-paths"))
    _, current, _ = call(sim, "GET", f"{base(sim)}/w-paths")
    current["spec"]["replicas"] = 11
    status, body, _ = call(sim, "PUT", f"{base(sim)}/w-paths", current)
    assert status == 422 and causes(body) == [("FieldValueInvalid", "spec.replicas")]
    for content_type, patch in (
        ("application/merge-patch+json", {"spec": {"mode": "OFF"}}),
        ("application/json-patch+json", [{"op": "remove", "path": "/spec/mode"}]),
        ("application/apply-patch+yaml", widget("w-paths", mode="OFF")),
    ):
        status, body, _ = call(
            sim,
            "PATCH",
            f"{base(sim)}/w-paths",
            patch,
            content_type=content_type,
            query={
                "fieldManager": "test",
                **({"force": "true"} if "apply" in content_type else {}),
            },
        )
        assert status == 422, (content_type, body)
        assert causes(body)[0][1] == "spec.mode"
    # `force` is for apply patches only
    status, body, _ = merge_patch(sim, "w-paths", {"spec": {"replicas": 2}}, force="true")
    assert (status, causes(body)) == (422, [("FieldValueForbidden", "force")])
    # dry run is validated too and stores nothing
    status, body, _ = call(
        sim, "POST", base(sim), widget("w-dry", mode="OFF"), query={"dryRun": "All"}
    )
    assert status == 422


def test_server_side_apply_refuses_undeclared_fields(sim: ApiServer) -> None:
    """An applied configuration is typed against the schema: an undeclared field fails it
    (500, as the apiserver answers), whatever the field validation; defaults are not owned."""
    call(sim, "DELETE", f"{base(sim)}/w-ssa")
    for validation in ("Warn", "Ignore", "Strict"):
        status, body, _ = call(
            sim,
            "PATCH",
            f"{base(sim)}/w-ssa",
            widget("w-ssa", foo=1),
            content_type="application/apply-patch+yaml",
            query={"fieldManager": "test", "fieldValidation": validation},
        )
        assert status == 500, (validation, body)
        assert body["message"] == (
            f"failed to create typed patch object (/w-ssa; {GROUP}/v1, Kind=Widget): "
            ".spec.foo: field not declared in schema"
        )
    status, body, _ = call(
        sim,
        "PATCH",
        f"{base(sim)}/w-ssa",
        widget("w-ssa"),
        content_type="application/apply-patch+yaml",
        query={"fieldManager": "test"},
    )
    assert status == 201, body
    assert body["spec"]["timeout"] == "5s"
    assert "f:timeout" not in json.dumps(body["metadata"]["managedFields"])


def test_status_is_validated_against_the_status_schema(sim: ApiServer) -> None:
    create(sim, widget("w-status"))
    _, current, _ = call(sim, "GET", f"{base(sim)}/w-status")
    current["status"] = {"phase": "Ready", "observed": 1, "note": "x"}
    status, body, warnings = call(sim, "PUT", f"{base(sim)}/w-status/status", current)
    assert status == 200, body
    assert body["status"] == {"phase": "Ready", "observed": 1}
    assert warnings == ['299 - "unknown field \\"status.note\\""']
    status, body, _ = call(
        sim,
        "PATCH",
        f"{base(sim)}/w-status/status",
        {"status": {"phase": "Gone", "observed": "one"}},
        content_type="application/merge-patch+json",
    )
    assert status == 422
    assert sorted(causes(body)) == [
        ("FieldValueNotSupported", "status.phase"),
        ("FieldValueTypeInvalid", "status.observed"),
    ]
    # a status written through the main resource is ignored, so it is not checked there
    _, current, _ = call(sim, "GET", f"{base(sim)}/w-status")
    current["status"] = {"phase": "Gone"}
    status, body, _ = call(sim, "PUT", f"{base(sim)}/w-status", current)
    assert status == 200 and body["status"]["phase"] == "Ready"


def test_the_python_client_sees_invalid_custom_resources(sim: ApiServer) -> None:
    with config.new_client_from_config(config_file=str(sim.kubeconfig)) as api:
        widgets = dynamic.DynamicClient(api).resources.get(api_version=f"{GROUP}/v1", kind="Widget")
        with pytest.raises(dynamic.exceptions.UnprocessibleEntityError) as caught:
            widgets.server_side_apply(
                body=widget("w-client", http=[{"route": [{"weight": -1}]}]),
                namespace=sim.namespace,
                field_manager="test",
            )
        status = json.loads(caught.value.body)
        assert sorted(c["field"] for c in status["details"]["causes"]) == [
            "spec.http[0].route[0].destination",
            "spec.http[0].route[0].weight",
        ]
        custom = client.CustomObjectsApi(api)
        with pytest.raises(client.ApiException) as raised:
            custom.create_namespaced_custom_object(
                GROUP, "v1", sim.namespace, "widgets", widget("w-client", replicas="x")
            )
        assert raised.value.status == 422


def test_kubectl_server_side_apply_names_the_field(sim: ApiServer, tmp_path: Path) -> None:
    def kubectl_apply(obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return run_kubectl(
            f"--kubeconfig={sim.kubeconfig}",
            "-n",
            sim.namespace,
            "apply",
            "--server-side",
            "-f",
            "-",
            cache=tmp_path,
            stdin=yaml.safe_dump(obj),
        )

    bad = kubectl_apply(widget("w-kubectl", http=[{"route": [{"destination": {}}]}]))
    assert bad.returncode != 0
    assert "spec.http[0].route[0].destination.host: Required value" in bad.stderr
    unknown = kubectl_apply(widget("w-kubectl", foo=1))
    assert unknown.returncode != 0
    assert ".spec.foo: field not declared in schema" in unknown.stderr
    good = kubectl_apply(widget("w-kubectl"))
    assert good.returncode == 0, good.stderr


def test_unique_items_are_refused_in_a_crd_schema(server: ApiServer) -> None:
    """A set says x-kubernetes-list-type: set; uniqueItems is quadratic and refused."""
    schema = copy.deepcopy(CRD)
    schema["metadata"]["name"] = f"widgets.{server.group}"
    schema["spec"]["group"] = server.group
    tags = schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    tags["properties"]["tags"]["uniqueItems"] = True
    status, body, _ = call(server, "POST", CRDS, schema)
    assert status == 422
    assert causes(body) == [
        (
            "FieldValueForbidden",
            "spec.validation.openAPIV3Schema.properties[spec].properties[tags].uniqueItems",
        )
    ]


def test_schemas_are_compiled_once_per_crd_version(kubesim: RunningSim) -> None:
    """kubesim only: its registry keeps one compiled schema per CRD version."""
    create_crd(kubesim, CRD)
    registry = kubesim.sim.registry
    rt = registry.lookup(GROUP, "v1", "widgets")
    assert rt.schema is not None
    path = f"/apis/{GROUP}/v1/namespaces/default/widgets"
    assert raw_request(kubesim, "POST", path, widget("w-once"))[0] == 201
    root = rt.schema.root
    assert raw_request(kubesim, "PUT", f"{path}/w-once", widget("w-once"))[0] == 200
    assert registry.lookup(GROUP, "v1", "widgets").schema is rt.schema
    assert rt.schema.root is root
