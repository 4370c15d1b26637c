"""What the user sees when things go wrong: the cluster's reason in events, findings that name
the fix."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.istio.declaration import DECLARATION
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.declare.checks import Check, CheckContext, Finding
from adapters.kit.declare.validation_checks import deployments_ready, webhooks_present
from adapters.kit.model.records import OperationState, Severity
from adapters.kit.plan.planner import Planner
from adapters.kit.run.executor.kit_executor import KitExecutor
from kubesim.harness import RunningSim
from tests.adapters.istio.test_execution import run

BROKEN = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken}
spec:
  selector: {matchLabels: {app: broken}}
  template:
    metadata:
      labels: {app: broken}
      annotations: {kubesim.meshplane.io/fail: ImagePullBackOff}
    spec:
      containers: [{name: app, image: example.invalid/missing:1}]
"""


@pytest.fixture
async def executor(planner: Planner, sim: RunningSim) -> AsyncIterator[KitExecutor]:
    kit = KitExecutor(DECLARATION, planner, kubeconfig=sim.kubeconfig)
    yield kit
    await kit.aclose()


async def test_a_workload_that_cannot_start_fails_with_the_clusters_reason(
    executor: KitExecutor,
) -> None:
    result, events = await run(executor, "custom", custom_body=BROKEN, timeout_seconds=2.0)
    assert result.state is OperationState.FAILED
    assert result.error is not None
    assert "ImagePullBackOff" in result.error.message
    assert "image" in result.error.suggested_remediation
    failed = [e for e in events.of(Severity.ERROR) if e.component == "Deployment default/broken"]
    assert failed and "ImagePullBackOff" in failed[0].details


async def check(session: ClusterSession, *checks: Check) -> list[Finding]:
    ctx = CheckContext(mesh="istio", namespace="istio-system", parameters={}, cluster=session)
    found: list[Finding] = []
    for each in checks:
        found.extend(await each(ctx))
    return found


async def test_checks_name_what_is_missing(session: ClusterSession) -> None:
    (missing,) = await check(session, deployments_ready("istiod"))
    assert missing.severity is Severity.ERROR
    assert "does not exist" in missing.summary
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "injector", "labels": {"app": "sidecar-injector"}},
        "webhooks": [
            {
                "name": "inject.example.com",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "clientConfig": {"service": {"name": "istiod", "namespace": "istio-system"}},
            }
        ],
    }
    (none,) = await check(
        session, webhooks_present("MutatingWebhookConfiguration", "app=sidecar-injector", what="x")
    )
    assert none.severity is Severity.ERROR
    await session.apply(webhook)
    (dangling,) = await check(
        session, webhooks_present("MutatingWebhookConfiguration", "app=sidecar-injector", what="x")
    )
    assert dangling.severity is Severity.WARNING
    assert dangling.details == "Service istio-system/istiod"
