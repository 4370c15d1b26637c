"""One catalogue entry (`OperationSpec`): its category, parameters, sources and what it owns."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from adapters.kit.declare.checks import Check, RequestCheck
from adapters.kit.declare.parameters import (
    ADOPT_EXISTING_PARAMETER,
    CREATE_NAMESPACE_PARAMETER,
    PURGE_CRDS_PARAMETER,
    Parameter,
)
from adapters.kit.declare.sources import Source

__all__ = ["Category", "OperationSpec", "Ownership"]


class Category(enum.Enum):
    """Catalogue category (mirrors `meshplane.adapter.v1.OperationCategory`)."""

    INSTALL = "INSTALL"
    SAMPLE_APPLICATION = "SAMPLE_APPLICATION"
    CONFIGURE = "CONFIGURE"
    VALIDATE = "VALIDATE"
    CUSTOM = "CUSTOM"


class Ownership(enum.Enum):
    """What an operation owns, which decides what `delete` removes.

    OBJECTS: the operation created the objects; delete removes them (in reverse install order).
    FIELDS: the operation only set fields on objects others own (e.g. a namespace label); delete
    re-applies the same objects empty under the operation's field manager, so server-side apply
    removes exactly those fields and nothing else.
    """

    OBJECTS = "OBJECTS"
    FIELDS = "FIELDS"


@dataclass(frozen=True, kw_only=True)
class OperationSpec:
    """One catalogue entry and how the kit carries it out."""

    id: str
    category: Category
    description: str
    default_namespace: str
    parameters: tuple[Parameter, ...] = ()
    sources: tuple[Source, ...] = ()
    """What to apply, in order; charts and manifests are ordered by kind within the plan."""
    check: Check | None = None
    """For VALIDATE operations: the findings to report (nothing is applied)."""
    request_check: RequestCheck | None = None
    supports_delete: bool = True
    ownership: Ownership = Ownership.OBJECTS
    release: str = ""
    """Release name within the mesh; empty means the operation id. In the cluster it is prefixed
    with the mesh (`MeshDeclaration.release_of`)."""
    uses_mesh_version: bool = False
    """True when mesh_version selects what is applied (install); validated against the index."""
    mesh_versions: tuple[str, ...] = ()
    """Versions the operation applies to; empty means all installable versions."""
    custom: bool = False
    """True for the `custom` operation: objects come from the request's YAML body."""

    @property
    def release_name(self) -> str:
        """The operation's release within its mesh (what `status_release` names)."""
        return self.release or self.id

    @property
    def request_parameters(self) -> tuple[Parameter, ...]:
        """Every parameter a request may send: the declared ones, plus the kit's
        ``create-namespace`` for operations that apply anything, and ``adopt-existing`` and
        ``purge-crds`` (with delete) for those that apply objects of their own."""
        if self.check is not None:
            return self.parameters
        kit = [CREATE_NAMESPACE_PARAMETER]
        if self.ownership is Ownership.OBJECTS:
            kit.append(ADOPT_EXISTING_PARAMETER)
            if self.supports_delete:
                kit.append(PURGE_CRDS_PARAMETER)
        declared = {p.name for p in self.parameters}
        return (*self.parameters, *(p for p in kit if p.name not in declared))
