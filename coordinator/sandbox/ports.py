"""Where a sandbox's parts listen: fixed ports from one base, so addresses survive restarts.

The coordinator takes the base (the client's default address), kubesim (or the real control
plane) base+1, and each mesh's adapter base+2 onwards, in the order meshes are registered.
"""

from __future__ import annotations

from dataclasses import dataclass

from serving.mesh_entry_points import mesh_names

__all__ = ["DEFAULT_PORT_BASE", "PortPlan", "candidate_meshes", "port_base_fits"]

DEFAULT_PORT_BASE = 10100
"""Coordinator on the base (the client's default), kubesim on base+1, adapters from base+2."""

_HIGHEST_PORT = 65535
_FIRST_ADAPTER = 2


def candidate_meshes() -> tuple[str, ...]:
    """Meshes `up` tries, in port order: every registered one (serving/mesh_entry_points.py);
    those `meshplane adapter` cannot start are skipped."""
    return mesh_names()


def port_base_fits(base: int) -> bool:
    """Whether the coordinator, kubesim and every registered mesh's adapter fit above ``base``."""
    return 1 <= base <= _HIGHEST_PORT - _FIRST_ADAPTER - len(candidate_meshes())


@dataclass(frozen=True, kw_only=True)
class PortPlan:
    """The ports of one sandbox: from ``base``, for the registered meshes and ``meshes``."""

    base: int
    meshes: tuple[str, ...]
    """The meshes asked for; one not registered gets a port after the registered ones."""

    @property
    def coordinator(self) -> int:
        """Where the coordinator listens."""
        return self.base

    @property
    def kubesim(self) -> int:
        """Where the simulated (or real) API server listens."""
        return self.base + 1

    def adapter(self, mesh: str) -> int:
        """A fixed port per candidate mesh, so addresses survive restarts."""
        registered = candidate_meshes()
        known = list(registered) + [m for m in self.meshes if m not in registered]
        return self.base + _FIRST_ADAPTER + known.index(mesh)
