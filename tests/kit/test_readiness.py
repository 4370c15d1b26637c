"""Readiness rules by kind (on status shapes real API servers report) and waiting against
kubesim, including the reason a failing workload gives."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.readiness import (
    hook_completion,
    pod_selector,
    readiness_of,
    reason_from_pods,
    waits_for,
)
from adapters.kit.apply.waiting import wait_gone, wait_ready
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.plans import Progress, ProgressKind, WaitPolicy
from kubesim.harness import RunningSim


def deployment(
    *, replicas: int = 2, generation: int = 2, status: dict[str, Any] | None = None
) -> KubeObject:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "generation": generation},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}},
        },
        "status": status or {},
    }


AVAILABLE = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}


def test_deployment_ready_only_when_observed_updated_and_available() -> None:
    done = {
        "observedGeneration": 2,
        "replicas": 2,
        "updatedReplicas": 2,
        "availableReplicas": 2,
        "conditions": [AVAILABLE],
    }
    assert readiness_of(deployment(status=done)).ready
    stale = readiness_of(deployment(status={**done, "observedGeneration": 1}))
    assert not stale.ready and stale.reason == "NotObserved"
    rolling = readiness_of(deployment(status={**done, "updatedReplicas": 1}))
    assert not rolling.ready
    unavailable = {
        **done,
        "availableReplicas": 1,
        "conditions": [
            {
                "type": "Available",
                "status": "False",
                "reason": "MinimumReplicasUnavailable",
                "message": "Deployment does not have minimum availability.",
            }
        ],
    }
    state = readiness_of(deployment(status=unavailable))
    assert not state.ready
    assert state.reason == "MinimumReplicasUnavailable"
    assert not state.failed


def test_deployment_progress_deadline_is_reported() -> None:
    status = {
        "observedGeneration": 2,
        "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ],
    }
    assert readiness_of(deployment(status=status)).reason == "ProgressDeadlineExceeded"


def test_statefulset_waits_for_revision() -> None:
    obj: KubeObject = {
        "kind": "StatefulSet",
        "metadata": {"generation": 1},
        "spec": {"replicas": 3},
        "status": {
            "observedGeneration": 1,
            "readyReplicas": 3,
            "currentRevision": "db-1",
            "updateRevision": "db-2",
        },
    }
    assert readiness_of(obj).reason == "RollingUpdate"
    obj["status"]["currentRevision"] = "db-2"
    assert readiness_of(obj).ready
    obj["status"]["readyReplicas"] = 2
    assert not readiness_of(obj).ready


def test_daemonset_needs_every_scheduled_pod_ready_and_updated() -> None:
    obj: KubeObject = {
        "kind": "DaemonSet",
        "metadata": {"generation": 1},
        "status": {
            "observedGeneration": 1,
            "desiredNumberScheduled": 3,
            "numberReady": 3,
            "updatedNumberScheduled": 2,
        },
    }
    assert not readiness_of(obj).ready
    obj["status"]["updatedNumberScheduled"] = 3
    assert readiness_of(obj).ready


def test_job_complete_and_failed() -> None:
    job: KubeObject = {"kind": "Job", "status": {"active": 1}}
    assert not readiness_of(job).ready
    job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    assert readiness_of(job).ready
    job["status"]["conditions"] = [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "x"}
    ]
    state = readiness_of(job)
    assert state.failed and state.reason == "BackoffLimitExceeded"


def test_crd_pod_and_service_rules() -> None:
    crd: KubeObject = {"kind": "CustomResourceDefinition", "status": {"conditions": []}}
    assert not readiness_of(crd).ready
    crd["status"]["conditions"] = [{"type": "Established", "status": "True"}]
    assert readiness_of(crd).ready

    pod: KubeObject = {
        "kind": "Pod",
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"name": "app", "state": {"waiting": {"reason": "ErrImagePull", "message": "m"}}}
            ],
        },
    }
    assert readiness_of(pod).reason == "ErrImagePull"
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    assert readiness_of(pod).ready

    cluster_ip: KubeObject = {"kind": "Service", "spec": {"type": "ClusterIP"}}
    balancer: KubeObject = {"kind": "Service", "spec": {"type": "LoadBalancer"}, "status": {}}
    assert readiness_of(cluster_ip).ready and not waits_for(cluster_ip)
    assert waits_for(balancer)
    assert readiness_of(balancer).reason == "LoadBalancerPending"
    balancer["status"] = {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}
    assert readiness_of(balancer).ready

    assert readiness_of({"kind": "ConfigMap"}).ready
    assert not waits_for({"kind": "ConfigMap"})


def test_pod_selector_and_pod_reasons() -> None:
    selector = pod_selector(
        {
            "spec": {
                "selector": {
                    "matchLabels": {"app": "web", "tier": "front"},
                    "matchExpressions": [
                        {"key": "track", "operator": "In", "values": ["stable", "canary"]},
                        {"key": "legacy", "operator": "DoesNotExist"},
                    ],
                }
            }
        }
    )
    assert selector == "app=web,tier=front,track in (stable,canary),!legacy"
    creating = {
        "metadata": {"name": "a"},
        "status": {
            "containerStatuses": [
                {"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}
            ]
        },
    }
    crashing = {
        "metadata": {"name": "b"},
        "status": {
            "containerStatuses": [
                {"name": "c", "state": {"terminated": {"reason": "Error", "exitCode": 1}}}
            ]
        },
    }
    unschedulable = {
        "metadata": {"name": "c"},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes",
                }
            ]
        },
    }
    assert reason_from_pods([crashing]) == ("Error", "pod b: container c exited 1")
    assert reason_from_pods([unschedulable])[0] == "Unschedulable"  # type: ignore[index]
    assert reason_from_pods([creating])[0] == "ContainerCreating"  # type: ignore[index]
    assert reason_from_pods([]) is None


@pytest.fixture
async def session(kubesim: RunningSim) -> AsyncIterator[ClusterSession]:
    async with await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as cluster:
        yield cluster


def workload(name: str, *, fail: str | None = None, replicas: int = 1) -> KubeObject:
    metadata: dict[str, Any] = {"name": name, "namespace": "default"}
    if fail:
        metadata["annotations"] = {"kubesim.meshplane.io/fail": fail}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": f"example/{name}:1"}]},
            },
        },
    }


async def test_wait_ready_reports_each_component_as_it_becomes_ready(
    session: ClusterSession,
) -> None:
    refs = []
    for name in ("alpha", "beta", "gamma"):
        obj = workload(name, replicas=2)
        await session.apply(obj)
        refs.append(ObjectRef.from_manifest(obj))
    events: list[Progress] = []

    result = await wait_ready(
        session, refs, WaitPolicy(timeout_seconds=10, poll_interval_seconds=0.1), events.append
    )

    assert result.error() is None
    assert sorted(ref.name for ref in result.ready) == ["alpha", "beta", "gamma"]
    assert [e.kind for e in events if e.kind is not ProgressKind.WAITING] == [
        ProgressKind.READY
    ] * 3
    waiting = [e for e in events if e.kind is ProgressKind.WAITING]
    assert len(waiting) <= 3 and all(e.reason for e in waiting)
    for ref in refs:
        found = await session.get_ref(ref)
        assert found is not None and readiness_of(found).ready


async def test_wait_ready_names_the_reason_on_timeout(session: ClusterSession) -> None:
    good, bad = workload("good"), workload("bad", fail="ImagePullBackOff")
    for obj in (good, bad):
        await session.apply(obj)
    events: list[Progress] = []
    started = time.monotonic()

    result = await wait_ready(
        session,
        [ObjectRef.from_manifest(good), ObjectRef.from_manifest(bad)],
        WaitPolicy(timeout_seconds=1.0, poll_interval_seconds=0.1),
        events.append,
    )

    assert time.monotonic() - started < 5
    assert [ref.name for ref in result.ready] == ["good"]
    assert result.timed_out
    failed = [e for e in events if e.kind is ProgressKind.FAILED]
    assert len(failed) == 1
    assert failed[0].ref.name == "bad"
    assert failed[0].reason == "ImagePullBackOff"
    detail = result.error()
    assert detail is not None
    assert detail.code == "WORKLOAD_NOT_READY"
    assert "ImagePullBackOff" in detail.message
    assert "image" in detail.suggested_remediation


async def test_wait_gone_returns_what_is_left(session: ClusterSession) -> None:
    obj = workload("short-lived")
    await session.apply(obj)
    ref = ObjectRef.from_manifest(obj)
    assert await wait_gone(session, [ref], within_seconds=0.1) == [ref]
    await session.delete(ref)
    assert await wait_gone(session, [ref], within_seconds=5) == []


def test_hooks_are_done_when_finished_not_when_running() -> None:
    running: KubeObject = {
        "kind": "Pod",
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert readiness_of(running).ready
    assert not hook_completion(running).ready
    assert hook_completion({"kind": "Pod", "status": {"phase": "Succeeded"}}).ready
    assert hook_completion({"kind": "Pod", "status": {"phase": "Failed"}}).failed
    job: KubeObject = {
        "kind": "Job",
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }
    assert hook_completion(job).ready


class CountingSource:
    """The session, counting the reads waiting makes."""

    def __init__(self, session: ClusterSession) -> None:
        self.session = session
        self.reads = 0

    async def get_ref(self, ref: ObjectRef) -> KubeObject | None:
        self.reads += 1
        return await self.session.get_ref(ref)

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str = "",
    ) -> list[KubeObject]:
        return await self.session.list(api_version, kind, namespace, label_selector)


def crd(plural: str) -> KubeObject:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": plural[:-1].title()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }


async def test_wait_ready_takes_the_first_look_from_the_write_answer(
    session: ClusterSession,
) -> None:
    widgets, web = crd("widgets"), workload("observed-web")
    crd_answer, _ = await session.apply(widgets)
    web_answer, _ = await session.apply(web)
    refs = [ObjectRef.from_manifest(widgets), ObjectRef.from_manifest(web)]
    observed = {refs[0].key: crd_answer, refs[1].key: web_answer}
    source = CountingSource(session)
    events: list[Progress] = []
    policy = WaitPolicy(timeout_seconds=10, poll_interval_seconds=0.05)

    established = await wait_ready(source, refs[:1], policy, events.append, observed=observed)
    assert established.ready == (refs[0],) and source.reads == 0

    # A workload's write answer is not ready yet: waiting goes on to read the cluster.
    result = await wait_ready(source, refs[1:], policy, events.append, observed=observed)
    assert result.ready == (refs[1],) and source.reads >= 1


WEBHOOK_REFUSAL = (
    'Internal error occurred: failed calling webhook "namespace.sidecar-injector.istio.io": '
    'failed to call webhook: Post "https://istiod.istio-system.svc:443/inject": dial tcp '
    "10.96.0.20:443: connect: network is unreachable"
)
REPLICA_FAILURE = {
    "type": "ReplicaFailure",
    "status": "True",
    "reason": "FailedCreate",
    "message": WEBHOOK_REFUSAL,
}


class ScriptedSource:
    """An ObjectSource whose one object goes through the given states, one per read."""

    def __init__(self, *states: KubeObject) -> None:
        self.states = list(states)
        self.reads = 0

    async def get_ref(self, ref: ObjectRef) -> KubeObject | None:
        self.reads += 1
        return self.states[min(self.reads, len(self.states)) - 1]

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str = "",
    ) -> list[KubeObject]:
        return []  # no pods were ever created


def test_a_workload_that_cannot_create_pods_is_stuck_with_the_controllers_words() -> None:
    stuck = deployment(
        generation=1,
        status={
            "observedGeneration": 1,
            "conditions": [AVAILABLE | {"status": "False"}, REPLICA_FAILURE],
        },
    )
    state = readiness_of(stuck)
    assert (state.ready, state.stuck, state.failed) == (False, True, False)
    assert state.reason == "FailedCreate" and "sidecar-injector" in state.message
    replicaset = stuck | {"kind": "ReplicaSet"}
    assert readiness_of(replicaset).stuck


async def test_wait_fails_a_stuck_workload_with_its_cause_not_a_timeout() -> None:
    stuck = deployment(
        generation=1, status={"observedGeneration": 1, "conditions": [REPLICA_FAILURE]}
    )
    source = ScriptedSource(stuck)
    events: list[Progress] = []

    result = await wait_ready(
        source,
        [ObjectRef.from_manifest(stuck)],
        WaitPolicy(timeout_seconds=60, poll_interval_seconds=0.05, stuck_seconds=0.3),
        events.append,
    )

    assert not result.timed_out
    detail = result.error()
    assert detail is not None and detail.code == "WORKLOAD_FAILED"
    assert "FailedCreate" in detail.message and "sidecar-injector" in detail.message
    assert "webhook" in detail.suggested_remediation
    waiting = [e for e in events if e.kind is ProgressKind.WAITING]
    assert [e.reason for e in waiting] == ["FailedCreate"]
    assert [e.reason for e in events if e.kind is ProgressKind.FAILED] == ["FailedCreate"]


async def test_a_stuck_workload_that_recovers_is_ready() -> None:
    stuck = deployment(
        replicas=1, generation=1, status={"observedGeneration": 1, "conditions": [REPLICA_FAILURE]}
    )
    ready = deployment(
        replicas=1,
        generation=1,
        status={
            "observedGeneration": 1,
            "updatedReplicas": 1,
            "availableReplicas": 1,
            "conditions": [AVAILABLE],
        },
    )
    source = ScriptedSource(stuck, stuck, ready)
    events: list[Progress] = []

    result = await wait_ready(
        source,
        [ObjectRef.from_manifest(stuck)],
        WaitPolicy(timeout_seconds=60, poll_interval_seconds=0.05, stuck_seconds=30),
        events.append,
    )

    assert result.error() is None and len(result.ready) == 1
    assert [e.kind for e in events] == [ProgressKind.WAITING, ProgressKind.READY]
