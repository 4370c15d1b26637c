"""GetMeshStatus for one cluster: the install release's inventory, its workloads, injection.

"Installed" and "version" come from the release record this mesh's install operation keeps in
the cluster (so they survive adapter restarts and reflect what is really there; release names
are mesh-scoped, and another mesh's record is never read as ours); component readiness is read
live; injection namespaces are those carrying the declaration's label or annotation.
"""

from __future__ import annotations

from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.inventory import release_status
from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.run.seam import ComponentState, MeshStatus

__all__ = ["injection_namespaces", "mesh_status"]


async def injection_namespaces(session: ClusterSession, declaration: MeshDeclaration) -> list[str]:
    """Namespaces labelled or annotated for sidecar injection, sorted."""
    found: set[str] = set()
    if declaration.injection_label is not None:
        key, value = declaration.injection_label
        for namespace in await session.list("v1", "Namespace", label_selector=f"{key}={value}"):
            found.add(str((namespace.get("metadata") or {}).get("name", "")))
    if declaration.injection_annotation is not None:
        key, value = declaration.injection_annotation
        for namespace in await session.list("v1", "Namespace"):
            metadata = namespace.get("metadata") or {}
            if str((metadata.get("annotations") or {}).get(key, "")) == value:
                found.add(str(metadata.get("name", "")))
    return sorted(found - {""})


async def mesh_status(
    session: ClusterSession, declaration: MeshDeclaration, *, cluster: str, namespace: str
) -> MeshStatus:
    """The mesh as installed in ``namespace`` (the install operation's default when empty)."""
    namespace = namespace or _install_namespace(declaration)
    status = await release_status(
        session, namespace, declaration.status_release_name, mesh=declaration.mesh
    )
    injected = tuple(await injection_namespaces(session, declaration))
    if status is None:
        return MeshStatus(
            cluster=cluster,
            installed=False,
            namespace=namespace,
            injection_namespaces=injected,
        )
    return MeshStatus(
        cluster=cluster,
        installed=status.installed,
        version=status.version,
        namespace=namespace,
        components=tuple(
            ComponentState(
                kind=component.ref.kind,
                name=component.ref.name,
                namespace=component.ref.namespace or "",
                ready=component.ready,
                message=component.message,
            )
            for component in status.components
        ),
        injection_namespaces=injected,
    )


def _install_namespace(declaration: MeshDeclaration) -> str:
    for spec in declaration.operations:
        if spec.release_name == declaration.status_release:
            return spec.default_namespace
    return declaration.default_namespace
