"""Consul's static-server and static-client: built by the adapter, faithful to upstream.

The shipped mirror copy of static-client.yaml does not parse (two documents joined without a
newline); the adapter builds both apps from parameters instead, and these tests hold the built
objects to what upstream's files say.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.consul.declaration import DECLARATION
from adapters.kit.declare.sources import ObjectsSource, PlanContext
from adapters.kit.model.objects import KubeObject
from adapters.kit.model.yaml_documents import ManifestError, load_documents
from tests.fixtures_paths import shared_fixtures
from tests.kit.in_memory_cluster import InMemoryCluster


async def built(operation: str, **parameters: str) -> list[KubeObject]:
    spec = DECLARATION.operation(operation)
    assert spec is not None
    ctx = PlanContext(
        mesh="consul",
        operation=operation,
        namespace="default",
        mesh_version="",
        parameters={p.name: p.default for p in spec.parameters} | parameters,
        delete=False,
        cluster=InMemoryCluster(),
    )
    objects: list[KubeObject] = []
    for source in spec.sources:
        assert isinstance(source, ObjectsSource)
        objects.extend(await source.build(ctx))
    return objects


def by_kind(objects: list[KubeObject]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


def upstream(path: Path) -> dict[str, dict[str, Any]]:
    objects = load_documents(path.read_text(encoding="utf-8"), source=path.name)
    for obj in objects:
        obj["metadata"]["namespace"] = "default"
    return by_kind(objects)


def test_the_shipped_static_client_file_is_rejected_with_a_clear_error() -> None:
    path = shared_fixtures() / "apps" / "static-client.yaml"
    with pytest.raises(ManifestError, match=r"document 2: duplicate key 'apiVersion'"):
        load_documents(path.read_text(encoding="utf-8"), source=path.name)


async def test_static_server_is_upstream_static_server() -> None:
    expected = upstream(shared_fixtures() / "apps" / "static-server.yaml")
    assert by_kind(await built("static-server")) == expected


async def test_static_server_answers_with_the_text_parameter() -> None:
    deployment = by_kind(await built("static-server", text="hi there"))["Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ['-text="hi there"', "-listen=:8080"]


async def test_static_client_is_upstream_static_client_with_the_inject_annotations(
    tmp_path: Path,
) -> None:
    text = (shared_fixtures() / "apps" / "static-client.yaml").read_text(encoding="utf-8")
    # Only here, to compare against upstream: put back the newline the shipped file lost.
    repaired = tmp_path / "static-client.yaml"
    repaired.write_text(text.replace("port: 80---", "port: 80\n---"), encoding="utf-8")
    expected = upstream(repaired)
    objects = by_kind(await built("static-client", **{"upstream-port": "2345"}))
    template = objects["Deployment"]["spec"]["template"]["metadata"]
    assert template.pop("annotations") == {
        "consul.hashicorp.com/connect-inject": "true",
        "consul.hashicorp.com/connect-service-upstreams": "static-server:2345",
    }
    assert objects == expected
