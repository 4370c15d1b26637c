"""The meshes installed in this environment, found through the `meshplane.meshes` entry points.

A mesh is registered by its distribution's metadata, not by a list in our code: ours in
pyproject.toml, a third party's in its own package::

    [project.entry-points."meshplane.meshes"]
    mymesh = "mymesh_adapter.declaration:DECLARATION"

Reading the names imports nothing of the meshes (the coordinator's sandbox uses them without
importing any adapter code); `adapters.kit.process.mesh_registry` loads the declarations.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

__all__ = ["MESH_ENTRY_POINT_GROUP", "mesh_entry_points", "mesh_names"]

MESH_ENTRY_POINT_GROUP = "meshplane.meshes"


def mesh_entry_points() -> dict[str, EntryPoint]:
    """Each registered mesh's entry point by name, in name order (the first one of a name wins,
    as the import system's path order decides)."""
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=MESH_ENTRY_POINT_GROUP):
        found.setdefault(point.name, point)
    return dict(sorted(found.items()))


def mesh_names() -> tuple[str, ...]:
    """The registered meshes' names, in name order."""
    return tuple(mesh_entry_points())
