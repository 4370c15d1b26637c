"""The order objects are applied and deleted in: install tiers, and uninstall groups by kind.

Built on `model.ordering`'s kind orders (Helm's `InstallOrder` and `UninstallOrder`). Objects of
one tier are applied concurrently, tiers in order; deletion goes kind by kind.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.ordering import INSTALL_ORDER, UNINSTALL_ORDER

__all__ = ["Tier", "hook_order", "tier_of", "tiers_of", "uninstall_groups"]

_RANK = {kind: rank for rank, kind in enumerate(INSTALL_ORDER)}
_UNINSTALL_RANK = {kind: rank for rank, kind in enumerate(UNINSTALL_ORDER)}
_CONFIG_LAST = _RANK["Service"]
_WORKLOADS_LAST = _RANK["CronJob"]


class Tier(enum.IntEnum):
    """Apply tiers, in order. Within a tier order does not matter."""

    NAMESPACES = 0
    CRDS = 1
    CONFIG = 2
    """Config, RBAC, Services."""
    WORKLOADS = 3
    LATE = 4
    """Webhooks and other late kinds."""
    CUSTOM_RESOURCES = 5


def tier_of(obj: KubeObject) -> Tier:
    """The tier ``obj`` (a manifest) is applied in; kinds install order does not know are
    custom resources."""
    kind = str(obj.get("kind", ""))
    rank = _RANK.get(kind)
    if rank is None:
        return Tier.CUSTOM_RESOURCES
    if rank <= _RANK["Namespace"]:
        return Tier.NAMESPACES
    if kind == "CustomResourceDefinition":
        return Tier.CRDS
    if rank <= _CONFIG_LAST:
        return Tier.CONFIG
    if rank <= _WORKLOADS_LAST:
        return Tier.WORKLOADS
    return Tier.LATE


def tiers_of(objects: Iterable[KubeObject]) -> dict[Tier, list[KubeObject]]:
    """``objects`` by tier (a tier without objects is absent)."""
    tiers: dict[Tier, list[KubeObject]] = {}
    for obj in objects:
        tiers.setdefault(tier_of(obj), []).append(obj)
    return tiers


def hook_order(manifest: KubeObject) -> tuple[int, str]:
    """Where a hook of one weight runs: by its kind's install rank, then its name."""
    kind = str(manifest.get("kind", ""))
    return _RANK.get(kind, len(_RANK)), ObjectRef.from_manifest(manifest).name


def uninstall_groups(refs: Iterable[ObjectRef]) -> list[list[ObjectRef]]:
    """Refs in uninstall order, grouped by kind (custom resources first)."""
    ordered = sorted(
        refs,
        key=lambda r: (
            _UNINSTALL_RANK.get(r.kind, -1),
            "" if r.kind in _UNINSTALL_RANK else r.kind,
        ),
    )
    groups: list[list[ObjectRef]] = []
    for ref in ordered:
        if groups and groups[-1][0].kind == ref.kind:
            groups[-1].append(ref)
        else:
            groups.append([ref])
    return groups
