"""The namespace and kind policy and ownership, through a real adapter's gRPC against kubesim.

Each attack of issue 12 is sent as a request would be: refused at the door when the request alone
shows it (PERMISSION_DENIED naming the object, the rule and the operator switch), failed at plan
time when only the cluster's discovery can tell (the operation's ErrorDetail and an ERROR event),
and allowed only by the adapter's own switches, never by a request parameter. Objects meshplane
does not manage are neither taken over nor deleted unless a request asks to adopt them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import yaml
from kubernetes import client, config

from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.model.plans import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from adapters.kit.process.cli import real_executor_factory
from adapters.kit.process.mesh_registry import known_meshes, load_declaration
from adapters.kit.process.server import RunningAdapter, start_adapter
from adapters.kit.testing import AdapterClient, AdapterProcess
from kubesim.harness import RunningSim
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from tests.kit.toy_adapter import TERMINAL, settings, status_code
from tests.kubesim.support import crd

StatusCode = grpc.StatusCode
RBAC = "rbac.authorization.k8s.io/v1"


def doc(**fields: Any) -> str:
    return yaml.safe_dump(fields, sort_keys=False)


KUBE_SYSTEM_CONFIG_MAP = doc(
    apiVersion="v1",
    kind="ConfigMap",
    metadata={"name": "pwn", "namespace": "kube-system"},
    data={"coredns": "hijacked"},
)
KUBE_SYSTEM_SECRET = doc(
    apiVersion="v1",
    kind="Secret",
    metadata={"name": "pwn", "namespace": "kube-system"},
    stringData={"token": "x"},
)
ANONYMOUS_ADMIN = doc(
    apiVersion=RBAC,
    kind="RoleBinding",
    metadata={"name": "pwn", "namespace": "kube-system"},
    roleRef={
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "cluster-admin",
    },
    subjects=[
        {"kind": "Group", "name": "system:anonymous", "apiGroup": "rbac.authorization.k8s.io"}
    ],
)


def host_pid_daemon_set(namespace: str) -> str:
    return doc(
        apiVersion="apps/v1",
        kind="DaemonSet",
        metadata={"name": "pwn", "namespace": namespace},
        spec={
            "selector": {"matchLabels": {"app": "pwn"}},
            "template": {
                "metadata": {"labels": {"app": "pwn"}},
                "spec": {
                    "hostPID": True,
                    "containers": [
                        {
                            "name": "root",
                            "image": "busybox",
                            "securityContext": {"privileged": True},
                        }
                    ],
                },
            },
        },
    )


CLUSTER_ADMIN_BINDING = doc(
    apiVersion=RBAC,
    kind="ClusterRoleBinding",
    metadata={"name": "pwn"},
    roleRef={
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "cluster-admin",
    },
    subjects=[
        {"kind": "Group", "name": "system:anonymous", "apiGroup": "rbac.authorization.k8s.io"}
    ],
)
EVERY_RESOURCE_WEBHOOK = doc(
    apiVersion="admissionregistration.k8s.io/v1",
    kind="ValidatingWebhookConfiguration",
    metadata={"name": "pwn"},
    webhooks=[
        {
            "name": "pwn.example.com",
            "rules": [
                {
                    "operations": ["*"],
                    "apiGroups": ["*"],
                    "apiVersions": ["*"],
                    "resources": ["*"],
                }
            ],
            "clientConfig": {"service": {"name": "sink", "namespace": "default"}},
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
        }
    ],
)
DEFAULT_PRIORITY_CLASS = doc(
    apiVersion="scheduling.k8s.io/v1",
    kind="PriorityClass",
    metadata={"name": "pwn"},
    value=1_000_000_000,
    globalDefault=True,
)


def cluster_scoped_crd(group: str, kind: str, plural: str) -> dict[str, Any]:
    """A CRD for ``kind`` in ``group`` whose objects have no namespace and any fields."""
    definition = crd(plural, group, kind)
    definition["spec"]["scope"] = "Cluster"
    return definition


GATEWAY_CLASS_CRD = cluster_scoped_crd(
    "gateway.networking.k8s.io", "GatewayClass", "gatewayclasses"
)
GATEWAY_CLASS = doc(
    apiVersion="gateway.networking.k8s.io/v1",
    kind="GatewayClass",
    metadata={"name": "pwn"},
    spec={"controllerName": "example.com/pwn"},
)

ELEVATED = "--allow-elevated-objects"
PROTECTED = "--allow-protected-namespaces"


@dataclass(frozen=True, kw_only=True)
class Attack:
    """A request body, what it must be refused with, and the object that must not appear."""

    body: str
    code: StatusCode
    starts: str
    fragments: tuple[str, ...]
    target: tuple[str, str, str, str | None]
    """(apiVersion, kind, name, namespace) that must not exist afterwards."""
    parameters: tuple[tuple[str, str], ...] = ()


ATTACKS = {
    "kube-system ConfigMap": Attack(
        body=KUBE_SYSTEM_CONFIG_MAP,
        code=StatusCode.PERMISSION_DENIED,
        starts="custom_body: ConfigMap kube-system/pwn: namespace kube-system is protected",
        fragments=("rule protected-namespace", PROTECTED),
        target=("v1", "ConfigMap", "pwn", "kube-system"),
    ),
    "kube-system Secret": Attack(
        body=KUBE_SYSTEM_SECRET,
        code=StatusCode.PERMISSION_DENIED,
        starts="custom_body: Secret kube-system/pwn: namespace kube-system is protected",
        fragments=("rule protected-namespace", PROTECTED),
        target=("v1", "Secret", "pwn", "kube-system"),
    ),
    "cluster-admin RoleBinding for anonymous": Attack(
        body=ANONYMOUS_ADMIN,
        code=StatusCode.PERMISSION_DENIED,
        starts="custom_body: RoleBinding kube-system/pwn: namespace kube-system is protected",
        fragments=(PROTECTED,),
        target=(RBAC, "RoleBinding", "pwn", "kube-system"),
    ),
    "cluster-admin RoleBinding for anonymous in default": Attack(
        body=ANONYMOUS_ADMIN.replace("kube-system", "default"),
        code=StatusCode.PERMISSION_DENIED,
        starts="custom_body: RoleBinding default/pwn: binds ClusterRole cluster-admin, which "
        "escalates privileges (rule rbac-escalation)",
        fragments=(ELEVATED,),
        target=(RBAC, "RoleBinding", "pwn", "default"),
    ),
    "privileged hostPID DaemonSet in kube-system": Attack(
        body=host_pid_daemon_set("kube-system"),
        code=StatusCode.PERMISSION_DENIED,
        starts="custom_body: DaemonSet kube-system/pwn: namespace kube-system is protected",
        fragments=(PROTECTED,),
        target=("apps/v1", "DaemonSet", "pwn", "kube-system"),
    ),
    "privileged hostPID DaemonSet in default": Attack(
        body=host_pid_daemon_set("default"),
        code=StatusCode.PERMISSION_DENIED,
        starts="custom_body: DaemonSet default/pwn: its pod template sets hostPID "
        "(rule privileged-workload)",
        fragments=(ELEVATED,),
        target=("apps/v1", "DaemonSet", "pwn", "default"),
    ),
    "ClusterRoleBinding to cluster-admin with the old parameter": Attack(
        body=CLUSTER_ADMIN_BINDING,
        parameters=(("allow_cluster_scoped", "true"),),
        code=StatusCode.INVALID_ARGUMENT,
        starts="parameters.allow_cluster_scoped: is no longer accepted",
        fragments=(ELEVATED, "MESHPLANE_ADAPTER_ALLOW_ELEVATED_OBJECTS"),
        target=(RBAC, "ClusterRoleBinding", "pwn", None),
    ),
    "ClusterRoleBinding to cluster-admin": Attack(
        body=CLUSTER_ADMIN_BINDING,
        code=StatusCode.PERMISSION_DENIED,
        starts="custom_body: ClusterRoleBinding pwn: grants or binds permissions across the "
        "cluster (rule cluster-rbac)",
        fragments=(ELEVATED,),
        target=(RBAC, "ClusterRoleBinding", "pwn", None),
    ),
    "webhook on every resource": Attack(
        body=EVERY_RESOURCE_WEBHOOK,
        code=StatusCode.PERMISSION_DENIED,
        starts="custom_body: ValidatingWebhookConfiguration pwn: intercepts API requests in "
        "every namespace (rule admission-control)",
        fragments=(ELEVATED,),
        target=("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "pwn", None),
    ),
    "default PriorityClass": Attack(
        body=DEFAULT_PRIORITY_CLASS,
        code=StatusCode.PERMISSION_DENIED,
        starts="custom_body: PriorityClass pwn: changes scheduling priority for the whole "
        "cluster (rule priority-class)",
        fragments=(ELEVATED,),
        target=("scheduling.k8s.io/v1", "PriorityClass", "pwn", None),
    ),
}


@dataclass
class Harness:
    adapter: RunningAdapter
    client: AdapterClient
    sim: RunningSim

    @property
    def stub(self) -> pb_grpc.MeshAdapterServiceStub:
        return self.client.stub

    async def apply(self, operation_id: str, body: str, **fields: Any) -> pb.ApplyOperationResponse:
        return await self.client.apply(
            "custom", operation_id=operation_id, custom_body=body, **fields
        )

    async def run(self, operation_id: str, body: str, **fields: Any) -> pb.Operation:
        """Apply and wait for the operation to end (whatever its outcome)."""
        await self.apply(operation_id, body, **fields)
        return await self.client.wait(operation_id, within=30)

    async def events(self, operation_id: str) -> list[pb.Event]:
        """The operation's events so far (read from the start of the log)."""
        events: list[pb.Event] = []
        call = self.stub.StreamEvents(pb.StreamEventsRequest(after_sequence=0))
        async with asyncio.timeout(10):
            async for response in call:
                if response.event.operation_id == operation_id:
                    events.append(response.event)
                    if response.event.operation_state in TERMINAL:
                        break
        call.cancel()
        return events


@contextlib.asynccontextmanager
async def adapter(
    sim: RunningSim, tmp_path: Path, mesh: str = "istio", **changes: Any
) -> AsyncIterator[Harness]:
    """A real adapter of ``mesh`` (the kit's executor) on 127.0.0.1:0, its cluster ``sim``."""
    running = await start_adapter(
        load_declaration(mesh),
        settings(kubeconfig=sim.kubeconfig, cache_dir=tmp_path / f"cache-{mesh}", **changes),
        real_executor_factory,
    )
    client_ = AdapterClient(running.address)
    try:
        yield Harness(adapter=running, client=client_, sim=sim)
    finally:
        await client_.close()
        await running.stop()


async def cluster_object(
    sim: RunningSim, api_version: str, kind: str, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    async with await ClusterSession.connect(kubeconfig_path=sim.kubeconfig) as session:
        return await session.get(api_version, kind, name, namespace)


async def create_unmanaged(sim: RunningSim, obj: dict[str, Any]) -> None:
    """What kubectl apply by someone else leaves: no meshplane labels, another field manager."""
    async with await ClusterSession.connect(kubeconfig_path=sim.kubeconfig) as session:
        await session.apply(obj, field_manager="kubectl", previous_version=None)


def labels_of(obj: dict[str, Any] | None) -> dict[str, str]:
    assert obj is not None
    return dict((obj.get("metadata") or {}).get("labels") or {})


# -- the namespace and kind policy -----------------------------------------------------------


@pytest.mark.parametrize("name", list(ATTACKS))
async def test_request_yaml_attacks_are_refused_before_anything_is_recorded(
    kubesim: RunningSim, tmp_path: Path, name: str
) -> None:
    attack = ATTACKS[name]
    async with adapter(kubesim, tmp_path) as h:
        for attempt in range(2):  # the refusal is stable, and the adapter keeps serving
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await h.apply("attack", attack.body, parameters=dict(attack.parameters))
            assert status_code(raised.value) == attack.code, (attempt, raised.value.details())
            details = raised.value.details() or ""
            assert details.startswith(attack.starts), details
            for fragment in attack.fragments:
                assert fragment in details, (fragment, details)
        assert len(h.adapter.journal) == 0
    assert await cluster_object(kubesim, *attack.target) is None


async def test_a_cluster_scoped_kind_only_discovery_knows_fails_at_plan_time(
    kubesim: RunningSim, tmp_path: Path
) -> None:
    # gateway.networking.k8s.io looks like a built-in group, and GatewayClass is in no static
    # table: only the cluster's discovery says it is cluster-scoped.
    async with await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as session:
        await session.apply(GATEWAY_CLASS_CRD)
    async with adapter(kubesim, tmp_path) as h:
        done = await h.run("gateway-class", GATEWAY_CLASS)
        assert done.state == pb.OPERATION_STATE_FAILED
        assert done.error.code == "PERMISSION_DENIED"
        assert done.error.message == (
            "GatewayClass pwn: is cluster-scoped: it affects every namespace (rule cluster-scoped)"
        )
        assert ELEVATED in done.error.suggested_remediation
        errors = [e for e in await h.events("gateway-class") if e.error.code]
        assert errors and errors[0].error == done.error
    assert (
        await cluster_object(kubesim, "gateway.networking.k8s.io/v1", "GatewayClass", "pwn") is None
    )


async def test_a_kind_the_cluster_does_not_serve_is_refused(
    kubesim: RunningSim, tmp_path: Path
) -> None:
    body = doc(apiVersion="example.com/v1", kind="Widget", metadata={"name": "w"})
    async with adapter(kubesim, tmp_path) as h:
        done = await h.run("widget", body)
    assert done.state == pb.OPERATION_STATE_FAILED
    assert done.error.code == "FAILED_PRECONDITION"
    assert "the cluster serves no Widget in example.com/v1" in done.error.message
    assert "rule unknown-kind" in done.error.message


async def test_the_operator_switches_allow_what_requests_cannot(
    kubesim: RunningSim, tmp_path: Path
) -> None:
    async with await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as session:
        await session.apply(GATEWAY_CLASS_CRD)
    allowed = [a for a in ATTACKS.values() if not a.parameters]
    async with adapter(
        kubesim, tmp_path, allow_elevated_objects=True, allow_protected_namespaces=True
    ) as h:
        for number, attack in enumerate(allowed):
            done = await h.run(f"allowed-{number}", attack.body)
            assert done.state == pb.OPERATION_STATE_SUCCEEDED, (attack.starts, done.error)
            assert await cluster_object(kubesim, *attack.target) is not None, attack.target
        done = await h.run("gateway-class", GATEWAY_CLASS)
        assert done.state == pb.OPERATION_STATE_SUCCEEDED, done.error
        # The request's old parameter stays refused, switch or not: requests cannot elevate.
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await h.apply("old", CLUSTER_ADMIN_BINDING, parameters={"allow_cluster_scoped": "true"})
        assert status_code(raised.value) == StatusCode.INVALID_ARGUMENT
    # The two switches are separate: elevation does not open protected namespaces.
    async with adapter(kubesim, tmp_path, allow_elevated_objects=True) as h:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await h.apply("kube-system", KUBE_SYSTEM_CONFIG_MAP.replace("pwn", "again"))
        assert status_code(raised.value) == StatusCode.PERMISSION_DENIED


async def test_the_switches_are_adapter_flags_and_environment_variables(
    kubesim: RunningSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHPLANE_ADAPTER_PROTECTED_NAMESPACES", "vault,payments")
    process = AdapterProcess(
        [
            "--port",
            "0",
            "--kubeconfig",
            str(kubesim.kubeconfig),
            "--cache-dir",
            str(tmp_path / "cache"),
            ELEVATED,
        ],
        tmp_path / "adapter.log",
    ).start()
    client_ = AdapterClient(process.address)
    try:
        await client_.wait_serving()
        done = await client_.run("custom", operation_id="crb", custom_body=CLUSTER_ADMIN_BINDING)
        assert done.state == pb.OPERATION_STATE_SUCCEEDED
        vault = KUBE_SYSTEM_CONFIG_MAP.replace("kube-system", "vault")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client_.apply("custom", operation_id="vault", custom_body=vault)
        assert status_code(raised.value) == StatusCode.PERMISSION_DENIED
        assert "namespace vault is protected" in (raised.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client_.apply("install", operation_id="ks", namespace="kube-system")
        assert status_code(raised.value) == StatusCode.PERMISSION_DENIED
    finally:
        await client_.close()
        assert process.stop() == 0
    assert await cluster_object(kubesim, RBAC, "ClusterRoleBinding", "pwn") is not None


# -- ownership --------------------------------------------------------------------------------

THEIRS: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "theirs", "namespace": "default"},
    "data": {"owner": "someone else"},
}
TAKEOVER = (
    doc(apiVersion="v1", kind="ConfigMap", metadata={"name": "mine"}, data={"a": "b"})
    + "---\n"
    + doc(apiVersion="v1", kind="ConfigMap", metadata={"name": "theirs"}, data={"owner": "us"})
)


@pytest.mark.parametrize("mesh", known_meshes())
async def test_an_unmanaged_object_is_never_taken_over_nor_deleted(
    kubesim: RunningSim, tmp_path: Path, mesh: str
) -> None:
    await create_unmanaged(kubesim, THEIRS)
    async with adapter(kubesim, tmp_path, mesh) as h:
        done = await h.run("takeover", TAKEOVER)
        assert done.state == pb.OPERATION_STATE_FAILED
        assert done.error.code == "FAILED_PRECONDITION"
        assert done.error.message.startswith(
            "ConfigMap default/theirs already exists and is not managed by this release"
        )
        assert "parameters.adopt-existing=true" in done.error.suggested_remediation
        errors = [e for e in await h.events("takeover") if e.error.code]
        assert errors and errors[0].error == done.error
        removed = await h.run("remove", TAKEOVER, delete=True)
        assert removed.state == pb.OPERATION_STATE_SUCCEEDED, removed.error
    theirs = await cluster_object(kubesim, "v1", "ConfigMap", "theirs", "default")
    assert theirs is not None and theirs["data"] == {"owner": "someone else"}
    assert MANAGED_BY_LABEL not in labels_of(theirs)
    assert await cluster_object(kubesim, "v1", "ConfigMap", "mine", "default") is None


async def test_adopt_existing_takes_an_object_over_explicitly(
    kubesim: RunningSim, tmp_path: Path
) -> None:
    await create_unmanaged(kubesim, THEIRS)
    async with adapter(kubesim, tmp_path) as h:
        done = await h.run("adopt", TAKEOVER, parameters={"adopt-existing": "true"})
        assert done.state == pb.OPERATION_STATE_SUCCEEDED, done.error
        theirs = await cluster_object(kubesim, "v1", "ConfigMap", "theirs", "default")
        assert theirs is not None and theirs["data"] == {"owner": "us"}
        assert labels_of(theirs)[MANAGED_BY_LABEL] == MANAGED_BY_VALUE
        # Adopted, it is the release's: its delete removes it.
        removed = await h.run("remove", TAKEOVER, delete=True)
        assert removed.state == pb.OPERATION_STATE_SUCCEEDED, removed.error
        assert removed.cluster_results[0].objects_deleted == 2
    assert await cluster_object(kubesim, "v1", "ConfigMap", "theirs", "default") is None


async def test_adopting_a_cluster_scoped_object_needs_the_operator_switch_too(
    kubesim: RunningSim, tmp_path: Path
) -> None:
    role = {
        "apiVersion": RBAC,
        "kind": "ClusterRole",
        "metadata": {"name": "theirs"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    await create_unmanaged(kubesim, role)
    body = doc(**{**role, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})
    async with adapter(kubesim, tmp_path) as h:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await h.apply("adopt", body, parameters={"adopt-existing": "true"})
        assert status_code(raised.value) == StatusCode.PERMISSION_DENIED
        assert ELEVATED in (raised.value.details() or "")
    async with adapter(kubesim, tmp_path, allow_elevated_objects=True) as h:
        refused = await h.run("no-adopt", body)
        assert refused.error.code == "FAILED_PRECONDITION"
        assert "ClusterRole theirs already exists" in refused.error.message
        done = await h.run("adopt", body, parameters={"adopt-existing": "true"})
        assert done.state == pb.OPERATION_STATE_SUCCEEDED, done.error
    adopted = await cluster_object(kubesim, RBAC, "ClusterRole", "theirs")
    assert adopted is not None and adopted["rules"][0]["verbs"] == ["list"]


async def test_a_delete_leaves_objects_that_no_longer_carry_the_releases_labels(
    kubesim: RunningSim, tmp_path: Path
) -> None:
    body = doc(apiVersion="v1", kind="ConfigMap", metadata={"name": "handed-over"}, data={"a": "b"})
    async with adapter(kubesim, tmp_path) as h:
        done = await h.run("apply", body)
        assert done.state == pb.OPERATION_STATE_SUCCEEDED, done.error
        # Someone takes the object over by hand: it is no longer meshplane's to delete.
        with config.new_client_from_config(config_file=str(kubesim.kubeconfig)) as api:
            client.CoreV1Api(api).patch_namespaced_config_map(
                "handed-over",
                "default",
                {
                    "metadata": {
                        "labels": {MANAGED_BY_LABEL: "someone", "meshplane.io/release": None}
                    }
                },
            )
        removed = await h.run("remove", body, delete=True)
        assert removed.state == pb.OPERATION_STATE_SUCCEEDED, removed.error
        assert removed.cluster_results[0].objects_deleted == 0
        kept = [
            e for e in await h.events("remove") if e.component == "ConfigMap default/handed-over"
        ]
        assert [e.summary for e in kept] == ["ConfigMap default/handed-over kept"]
        assert "left in place: it no longer carries release" in kept[0].details
    assert await cluster_object(kubesim, "v1", "ConfigMap", "handed-over", "default") is not None


async def test_a_role_binding_is_judged_by_the_cluster_role_the_cluster_has(
    kubesim: RunningSim, tmp_path: Path
) -> None:
    for name, verbs in (("pod-reader", ["get", "list"]), ("pod-impersonator", ["impersonate"])):
        await create_unmanaged(
            kubesim,
            {
                "apiVersion": RBAC,
                "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": verbs}],
            },
        )

    def binding(role: str) -> str:
        return doc(
            apiVersion=RBAC,
            kind="RoleBinding",
            metadata={"name": f"bind-{role}"},
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            subjects=[{"kind": "ServiceAccount", "name": "app"}],
        )

    async with adapter(kubesim, tmp_path) as h:
        reader = await h.run("reader", binding("pod-reader"))
        assert reader.state == pb.OPERATION_STATE_SUCCEEDED, reader.error
        impersonator = await h.run("impersonator", binding("pod-impersonator"))
        assert impersonator.error.code == "PERMISSION_DENIED"
        assert impersonator.error.message == (
            "RoleBinding default/bind-pod-impersonator: binds ClusterRole pod-impersonator, which "
            "grants verb 'impersonate' (rule rbac-escalation)"
        )
        missing = await h.run("missing", binding("nobody-made-this"))
        assert missing.error.code == "PERMISSION_DENIED"
        assert "which does not exist" in missing.error.message
        role = doc(
            apiVersion=RBAC,
            kind="Role",
            metadata={"name": "escalator"},
            rules=[
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["roles"],
                    "verbs": ["escalate"],
                }
            ],
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await h.apply("escalator", role)
        assert status_code(raised.value) == StatusCode.PERMISSION_DENIED
        assert (raised.value.details() or "").startswith(
            "custom_body: Role escalator: grants verb 'escalate' (rule rbac-escalation)"
        )
    assert await cluster_object(kubesim, RBAC, "RoleBinding", "bind-pod-reader", "default")
    assert not await cluster_object(
        kubesim, RBAC, "RoleBinding", "bind-pod-impersonator", "default"
    )
