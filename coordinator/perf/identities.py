"""Ids of results, tests, mesh configurations and environments.

Result and test ids are random UUIDs. `mesh_config_id` and `env_id` are UUIDv5 over a canonical
string, so two results taken against the same mesh (or environment) share the id and can be
grouped — never a placeholder.
"""

from __future__ import annotations

import uuid

from coordinator.perf.results import EnvironmentInfo, MeshInfo

# Namespace for every derived meshplane performance id (uuid5 of a fixed name, stable forever).
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://meshplane.dev/perf/v1")
NO_MESH = MeshInfo(type="none")
UNKNOWN_ENVIRONMENT = EnvironmentInfo()


def new_id() -> str:
    """A fresh random UUID for a result or a test."""
    return str(uuid.uuid4())


def mesh_config_id(mesh: MeshInfo | None) -> str:
    """UUIDv5 over `mesh/<type>/<version>` (type lower-cased; no mesh means type "none")."""
    mesh = mesh or NO_MESH
    return str(uuid.uuid5(_NAMESPACE, f"mesh/{mesh.type.strip().lower()}/{mesh.version.strip()}"))


def env_id(environment: EnvironmentInfo | None) -> str:
    """UUIDv5 over `env/<kubernetes version>/<node count>` (unknown: empty version, 0 nodes)."""
    environment = environment or UNKNOWN_ENVIRONMENT
    version = environment.kubernetes_version.strip().lower()
    return str(uuid.uuid5(_NAMESPACE, f"env/{version}/{environment.node_count}"))
