"""The namespaces a plan writes into: which are missing, whether it may create them, creating.

Only install creates its own namespace unasked; any other missing namespace is refused
(FAILED_PRECONDITION) unless the request asks for it (``create-namespace``) or the plan's own
Namespace objects create it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import structlog

from adapters.kit.apply.kube_errors import ApplyError
from adapters.kit.apply.run_context import ClusterWork
from adapters.kit.model.object_policy import FAILED_PRECONDITION
from adapters.kit.model.objects import KubeObject
from adapters.kit.model.plans import CREATE_NAMESPACE, ApplyPlan, ApplyPolicy
from adapters.kit.model.records import ErrorDetail
from serving.input_quoting import quoted

__all__ = [
    "check_missing_namespaces",
    "create_namespace",
    "missing_namespaces",
    "missing_namespaces_detail",
]

log = structlog.get_logger(__name__)

_NAME_SHOWN = 63


def _object_namespaces(objects: Iterable[KubeObject]) -> set[str]:
    names: set[str] = set()
    for obj in objects:
        namespace = (obj.get("metadata") or {}).get("namespace")
        if isinstance(namespace, str) and namespace:
            names.add(namespace)
    return names


def _declared_namespaces(objects: Iterable[KubeObject]) -> set[str]:
    return {
        str((obj.get("metadata") or {}).get("name", ""))
        for obj in objects
        if obj.get("kind") == "Namespace" and obj.get("apiVersion") == "v1"
    }


async def missing_namespaces(work: ClusterWork, plan: ApplyPlan) -> list[str]:
    """Namespaces the plan writes into (its release's and its objects') that do not exist."""
    wanted = sorted({plan.namespace, *_object_namespaces(plan.objects)})

    async def exists(name: str) -> bool:
        return await work.session.get("v1", "Namespace", name) is not None

    found = await work.each(wanted, exists)
    return [name for name, there in zip(wanted, found, strict=True) if not there]


async def create_namespace(work: ClusterWork, name: str, policy: ApplyPolicy) -> None:
    """Create a namespace (bare), e.g. so the inventory has a home."""
    await work.session.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        field_manager=policy.field_manager,
        force=policy.force_conflicts,
        previous_version=None,
    )
    log.info("release namespace created", namespace=name, cluster=work.session.name)


def check_missing_namespaces(plan: ApplyPlan, missing: Iterable[str]) -> set[str]:
    """Raise FAILED_PRECONDITION when the plan writes into ``missing`` namespaces it was not
    asked to create (`ApplyPlan.create_namespaces`); returns the namespaces the plan's own
    Namespace objects create, which count as asked for (a fields-only plan creates none: it
    only sets fields on objects that exist)."""
    declared = set() if plan.ownership_fields_only else _declared_namespaces(plan.objects)
    refused = sorted(name for name in missing if name not in declared)
    if refused and not plan.create_namespaces:
        raise ApplyError(missing_namespaces_detail(refused))
    return declared


def missing_namespaces_detail(names: Sequence[str]) -> ErrorDetail:
    """The refusal to write into namespaces that do not exist (FAILED_PRECONDITION)."""
    shown = ", ".join(quoted(name, _NAME_SHOWN) for name in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    subject = (
        f"namespace {shown} does not" if len(names) == 1 else f"namespaces {shown}{more} do not"
    )
    return ErrorDetail(
        code=FAILED_PRECONDITION,
        message=f"{subject} exist; pass --create-namespace (parameters.{CREATE_NAMESPACE}=true) "
        "to create it",
        probable_cause="a typo in the namespace, or it was never created; only install creates "
        "its own namespace",
        suggested_remediation=f"create the namespace first (kubectl create namespace), or send "
        f"parameters.{CREATE_NAMESPACE}=true",
    )
