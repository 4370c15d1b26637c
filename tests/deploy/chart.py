"""The meshplane Helm chart as tests see it: its path, and rendering it with the kit's engine."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from adapters.kit.model.objects import KubeObject
from adapters.kit.plan.rendering import RenderedRelease, render_chart
from tests.fixtures_paths import PROJECT_ROOT

CHART = PROJECT_ROOT / "deploy" / "helm" / "meshplane"
DOCKERFILE = PROJECT_ROOT / "deploy" / "docker" / "Dockerfile"
RELEASE = "mp"
NAMESPACE = "meshplane"


def rbac_file(mesh: str) -> Path:
    """The committed `meshplane rbac MESH` output the chart's ClusterRole is made from."""
    return CHART / "files" / f"rbac-{mesh}.yaml"


def committed_role(mesh: str) -> dict[str, Any]:
    """The committed ClusterRole for ``mesh``."""
    loaded = yaml.safe_load(rbac_file(mesh).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def meshes_with_rbac() -> list[str]:
    """Meshes whose generated role is committed (the chart can enable only these)."""
    return sorted(p.stem.removeprefix("rbac-") for p in (CHART / "files").glob("rbac-*.yaml"))


async def render(
    values: Mapping[str, Any] | None = None, *, chart: Path = CHART
) -> RenderedRelease:
    """Render the chart as release ``mp`` in namespace ``meshplane``."""
    return await render_chart(chart, release_name=RELEASE, namespace=NAMESPACE, values=values)


def render_sync(values: Mapping[str, Any] | None = None) -> RenderedRelease:
    """`render` for synchronous tests."""
    return asyncio.run(render(values))


def find(objects: tuple[KubeObject, ...] | list[KubeObject], kind: str, name: str) -> KubeObject:
    """The one object of ``kind`` named ``name``; fails listing what there is."""
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    present = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    raise AssertionError(f"no {kind} {name} among {present}")


def of_kind(objects: tuple[KubeObject, ...] | list[KubeObject], kind: str) -> list[KubeObject]:
    """Every object of ``kind``."""
    return [obj for obj in objects if obj["kind"] == kind]


def container(deployment: KubeObject) -> dict[str, Any]:
    """The single container of a Deployment."""
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def env_of(deployment: KubeObject) -> dict[str, Any]:
    """name → value (or valueFrom) of the container's environment."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment)["env"]}
