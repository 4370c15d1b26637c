"""The apply engine's shared pieces on their own: the tier table, uninstall groups, and how
concurrent steps run (bounded, in order) and fail (one error, the ApplyError first)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from adapters.kit.apply.apply_tiers import Tier, hook_order, tier_of, uninstall_groups
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.kube_errors import ApplyError
from adapters.kit.apply.run_context import ClusterWork, concurrent_steps, first_apply_error
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.records import ErrorDetail
from kubesim.harness import RunningSim


def manifest(kind: str, name: str = "x", api_version: str = "v1") -> KubeObject:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}


def ref(kind: str, name: str = "x", api_version: str = "v1") -> ObjectRef:
    return ObjectRef.from_manifest(manifest(kind, name, api_version))


def test_each_kind_has_its_tier_and_unknown_kinds_are_custom_resources() -> None:
    tiers = {
        kind: tier_of(manifest(kind))
        for kind in (
            "Namespace",
            "CustomResourceDefinition",
            "ConfigMap",
            "ClusterRole",
            "Service",
            "Deployment",
            "CronJob",
            "ValidatingWebhookConfiguration",
            "VirtualService",
        )
    }
    assert tiers == {
        "Namespace": Tier.NAMESPACES,
        "CustomResourceDefinition": Tier.CRDS,
        "ConfigMap": Tier.CONFIG,
        "ClusterRole": Tier.CONFIG,
        "Service": Tier.CONFIG,
        "Deployment": Tier.WORKLOADS,
        "CronJob": Tier.WORKLOADS,
        "ValidatingWebhookConfiguration": Tier.LATE,
        "VirtualService": Tier.CUSTOM_RESOURCES,
    }


def test_uninstall_goes_kind_by_kind_custom_resources_first_namespaces_last() -> None:
    refs = [
        ref("Namespace", "mesh"),
        ref("Deployment", "a", "apps/v1"),
        ref("VirtualService", "r", "networking.istio.io/v1"),
        ref("Deployment", "b", "apps/v1"),
        ref("ConfigMap", "c"),
    ]
    groups = [[r.kind for r in group] for group in uninstall_groups(refs)]
    assert groups[0] == ["VirtualService"]
    assert ["Deployment", "Deployment"] in groups
    assert groups[-1] == ["Namespace"]
    assert groups.index(["Deployment", "Deployment"]) < groups.index(["ConfigMap"])


def test_hooks_of_one_weight_run_in_install_order_then_by_name() -> None:
    hooks = [manifest("Job", "b", "batch/v1"), manifest("Job", "a", "batch/v1")]
    hooks.append(manifest("ServiceAccount", "z"))
    ordered = [h["metadata"]["name"] for h in sorted(hooks, key=hook_order)]
    assert ordered == ["z", "a", "b"]


def _refusal(code: str) -> ApplyError:
    return ApplyError(ErrorDetail(code=code, message=code))


def test_the_apply_error_is_surfaced_from_nested_groups() -> None:
    nested = BaseExceptionGroup(
        "outer",
        [ValueError("noise"), BaseExceptionGroup("inner", [_refusal("A"), _refusal("B")])],
    )
    found = first_apply_error(nested)
    assert isinstance(found, ApplyError) and found.detail.code == "A"
    plain = first_apply_error(BaseExceptionGroup("only", [KeyError("k"), ValueError("v")]))
    assert isinstance(plain, KeyError)


async def test_a_failed_concurrent_step_raises_its_own_error_not_a_group() -> None:
    async def refuse() -> None:
        await asyncio.sleep(0)
        raise _refusal("REFUSED")

    with pytest.raises(ApplyError) as caught:
        async with concurrent_steps() as group:
            group.create_task(refuse())
            group.create_task(asyncio.sleep(5))
    assert caught.value.detail.code == "REFUSED"


@pytest.fixture
async def session(kubesim: RunningSim) -> AsyncIterator[ClusterSession]:
    async with await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as cluster:
        yield cluster


async def test_each_keeps_the_order_and_the_bound(session: ClusterSession) -> None:
    work = ClusterWork(session=session, concurrency=3)
    running = 0
    most = 0

    async def square(n: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01 * (n % 3))
        running -= 1
        return n * n

    assert await work.each(list(range(10)), square) == [n * n for n in range(10)]
    assert most == 3
    assert await work.each([], square) == []
