"""meshplane's labels on the objects it applies: adding them, reading who owns an object.

Every applied object carries the managed-by, release and mesh labels; they decide what a later
upgrade may take over and what an uninstall or prune may delete.
"""

from __future__ import annotations

from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.plans import MANAGED_BY_LABEL, MANAGED_BY_VALUE, MESH_LABEL, RELEASE_LABEL

__all__ = ["labelled", "owned_by", "ownership_only"]


def labelled(obj: KubeObject, release: str, mesh: str) -> KubeObject:
    """A copy of ``obj`` carrying meshplane's managed-by, release and mesh labels.

    Pod template labels are left alone: changing them would change selectors and restart pods.
    """
    metadata = dict(obj.get("metadata") or {})
    labels = dict(metadata.get("labels") or {})
    labels[MANAGED_BY_LABEL] = MANAGED_BY_VALUE
    labels[RELEASE_LABEL] = release
    labels[MESH_LABEL] = mesh
    metadata["labels"] = labels
    return {**obj, "metadata": metadata}


def owned_by(obj: KubeObject, mesh: str, release: str | None = None) -> bool:
    """Whether ``obj`` carries meshplane's labels for ``mesh`` (and ``release``, when given).

    An object without a mesh label but with a release label predates mesh labels; release
    names start with their mesh, so the release label alone still names the owner.
    """
    labels = (obj.get("metadata") or {}).get("labels") or {}
    owner = str(labels.get(RELEASE_LABEL, ""))
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE or not owner:
        return False
    if labels.get(MESH_LABEL, mesh) != mesh:
        return False
    return release is None or owner == release


def ownership_only(ref: ObjectRef) -> KubeObject:
    """The empty apply that hands back every field our field manager set on ``ref``."""
    metadata = {"name": ref.name}
    if ref.namespace:
        metadata["namespace"] = ref.namespace
    return {"apiVersion": ref.api_version, "kind": ref.kind, "metadata": metadata}
