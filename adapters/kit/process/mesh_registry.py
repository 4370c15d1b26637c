"""Finding a mesh's declaration by name: the `meshplane.meshes` entry points, or an import string.

`meshplane adapter MESH`, `meshplane rbac MESH` and the test harness all name a mesh the same
way: a registered name (serving/mesh_entry_points.py; one line in the distribution's metadata) or
``package.module:NAME`` of a `MeshDeclaration` that is not registered. Only the named mesh is
imported.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from adapters.kit.declare.mesh import MeshDeclaration
from serving.mesh_entry_points import mesh_entry_points, mesh_names

__all__ = ["UnknownMesh", "known_meshes", "load_declaration", "resolve"]


class UnknownMesh(ValueError):
    """The name is neither a registered mesh nor an importable `MeshDeclaration`."""


def known_meshes() -> tuple[str, ...]:
    """The registered meshes' names, in name order."""
    return mesh_names()


def resolve(import_string: str) -> Any:
    """Import ``package.module:ATTR`` and return the attribute."""
    module_name, _, attribute = import_string.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{import_string!r} is not of the form package.module:NAME")
    return getattr(importlib.import_module(module_name), attribute)


def load_declaration(mesh: str) -> MeshDeclaration:
    """The declaration registered as ``mesh``, or the one ``mesh`` names as an import string."""
    points = mesh_entry_points()
    point = points.get(mesh)
    try:
        found = point.load() if point is not None else resolve(mesh)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UnknownMesh(_unknown(mesh, points, exc)) from exc
    if not isinstance(found, MeshDeclaration):
        raise UnknownMesh(f"{mesh!r} is not a MeshDeclaration (it is a {type(found).__name__})")
    return found


def _unknown(mesh: str, points: dict[str, Any], exc: Exception) -> str:
    known = ", ".join(points) or "none registered"
    if mesh in points or ":" in mesh:
        return f"mesh {mesh!r} cannot be loaded ({exc}); known meshes: {known}"
    close = difflib.get_close_matches(mesh, list(points), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"unknown mesh {mesh!r}{hint}; known meshes: {known} "
        "(or package.module:NAME of a MeshDeclaration)"
    )
