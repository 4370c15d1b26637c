"""Rendering charts into objects: our toy chart for every rule, the real charts for the counts."""

from __future__ import annotations

import asyncio
import datetime
from collections import Counter
from pathlib import Path
from typing import Any

import helm_python
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.kit.model.objects import CLUSTER_SCOPED_KINDS, KubeObject, ObjectRef
from adapters.kit.plan.rendering import ChartRenderError, RenderedRelease, render_chart
from tests.fixtures_paths import OWN_FIXTURES, shared_fixtures

TOY_CHART = OWN_FIXTURES / "kit" / "toychart"


def by_name(release: RenderedRelease) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in release.objects}


@pytest.fixture(params=["directory", "archive"])
def toy_chart(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "directory":
        return TOY_CHART
    return Path(helm_python.package(TOY_CHART, destination=tmp_path))


async def test_toy_chart_install_set(toy_chart: Path) -> None:
    release = await render_chart(toy_chart, release_name="demo", namespace="toys")
    objects = by_name(release)
    assert sorted(objects) == [
        "ClusterRole/demo-toy-reader",
        "ConfigMap/demo-sidecar",  # from the vendored subchart
        "ConfigMap/demo-toy-settings",
        "CustomResourceDefinition/gadgets.toy.example.com",  # from crds/
        "CustomResourceDefinition/widgets.toy.example.com",  # from templates/
        "Deployment/demo-toy",
        "Gadget/demo-toy",
        "Service/demo-toy",
        "Widget/demo-toy",
    ]
    assert (release.chart_name, release.chart_version, release.app_version) == (
        "toychart",
        "0.1.0",
        "1.0.0",
    )
    # The test hook Pod is not part of an install; NOTES.txt is text, not an object.
    assert release.skipped_test_hooks == ("Pod demo-toy-test",)
    assert release.notes.startswith("toychart 0.1.0 is installed as demo")
    assert "Subchart notes" not in release.notes
    # Install order: CRDs before the Service before the Deployment; custom resources last.
    kinds = [o["kind"] for o in release.objects]
    assert kinds.index("CustomResourceDefinition") < kinds.index("Service")
    assert kinds.index("Service") < kinds.index("Deployment")
    assert set(kinds[-2:]) == {"Gadget", "Widget"}


async def test_toy_chart_namespaces(toy_chart: Path) -> None:
    release = await render_chart(toy_chart, release_name="demo", namespace="toys")
    objects = by_name(release)
    namespaces = {key: o["metadata"].get("namespace") for key, o in objects.items()}
    assert namespaces["Deployment/demo-toy"] == "toys"
    assert namespaces["ConfigMap/demo-sidecar"] == "toys"
    assert namespaces["Service/demo-toy"] == "toys"  # set by the template itself
    assert namespaces["CustomResourceDefinition/widgets.toy.example.com"] is None
    assert namespaces["ClusterRole/demo-toy-reader"] is None  # the template's one is dropped
    # The Widget CRD in the same render says `scope: Cluster`; Gadget's says Namespaced.
    assert namespaces["Widget/demo-toy"] is None
    assert namespaces["Gadget/demo-toy"] == "toys"
    assert all(h.object["metadata"]["namespace"] == "toys" for h in release.hooks)


async def test_toy_chart_hooks(toy_chart: Path) -> None:
    release = await render_chart(toy_chart, release_name="demo", namespace="toys")
    pre = release.hooks_for("pre-install")
    # Weight -1 before weight 5, whatever their order in the template.
    assert [(h.ref.kind, h.weight) for h in pre] == [("ServiceAccount", -1), ("Job", 5)]
    assert pre[1].delete_policies == ("hook-succeeded", "before-hook-creation")
    assert pre[0].delete_policies == ("before-hook-creation",)  # Helm's default
    (post,) = release.hooks_for("post-install")
    assert post.ref == ObjectRef(
        api_version="batch/v1", kind="Job", namespace="toys", name="demo-toy-announce"
    )
    assert post.events == frozenset({"post-install", "post-upgrade"})
    assert release.hooks_for("post-upgrade") == [post]
    assert release.hooks_for("pre-delete") == []
    with pytest.raises(ValueError, match="unknown hook event"):
        release.hooks_for("test")
    hook_names = {h.ref.name for h in release.hooks}
    assert not hook_names & {o["metadata"]["name"] for o in release.objects if o["kind"] == "Job"}


async def test_toy_chart_kept_objects(toy_chart: Path) -> None:
    release = await render_chart(toy_chart, release_name="demo", namespace="toys")
    kept = {key for key, obj in by_name(release).items() if release.is_kept(obj)}
    # resource-policy: keep, and CRDs from crds/ (Helm never deletes those).
    assert kept == {
        "ConfigMap/demo-toy-settings",
        "CustomResourceDefinition/gadgets.toy.example.com",
    }


async def test_upgrade_render_and_capabilities() -> None:
    install = await render_chart(
        TOY_CHART, release_name="demo", namespace="toys", kube_version="v1.31.4"
    )
    settings = by_name(install)["ConfigMap/demo-toy-settings"]["data"]
    assert settings == {"kubeVersion": "v1.31.4", "isInstall": "true", "isUpgrade": "false"}

    upgrade = await render_chart(
        TOY_CHART, release_name="demo", namespace="toys", is_install=False, is_upgrade=True
    )
    objects = by_name(upgrade)
    assert objects["ConfigMap/demo-toy-settings"]["data"]["isUpgrade"] == "true"
    # Like Helm, crds/ is applied on install only.
    assert "CustomResourceDefinition/gadgets.toy.example.com" not in objects
    with pytest.raises(ValueError, match="exactly one of is_install and is_upgrade"):
        await render_chart(
            TOY_CHART, release_name="demo", namespace="toys", is_install=True, is_upgrade=True
        )


async def test_values_reach_templates_and_render_errors_are_reported() -> None:
    release = await render_chart(
        TOY_CHART, release_name="demo", namespace="toys", values={"replicas": 3}
    )
    assert by_name(release)["Deployment/demo-toy"]["spec"]["replicas"] == 3
    with pytest.raises(ChartRenderError, match=r"values\.image is required"):
        await render_chart(TOY_CHART, release_name="demo", namespace="toys", values={"image": None})
    with pytest.raises(ChartRenderError, match="must be JSON-like"):
        await render_chart(
            TOY_CHART, release_name="demo", namespace="toys", values={"replicas": {1, 2}}
        )
    with pytest.raises(ChartRenderError, match="cannot render chart"):
        await render_chart(OWN_FIXTURES / "kit", release_name="demo", namespace="toys")


async def test_template_producing_bad_yaml_names_the_template(tmp_path: Path) -> None:
    chart = tmp_path / "broken"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.1.0\n")
    (chart / "templates" / "list.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ChartRenderError, match=r"broken/templates/list.yaml, document 1 is a list"):
        await render_chart(chart, release_name="b", namespace="n")


async def test_rendering_does_not_block_the_event_loop() -> None:
    # A ticker that is always ready counts event-loop iterations. Rendering off the loop leaves
    # the loop spinning (hundreds of iterations while Helm works in its thread); rendering on it
    # would allow only the handful of iterations at its own await points.
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    ticker = asyncio.create_task(tick(), name="test-ticker")
    try:
        for _ in range(3):
            await render_chart(TOY_CHART, release_name="demo", namespace="toys")
    finally:
        ticker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ticker
    assert ticks >= 20


def kind_counts(release: RenderedRelease) -> Counter[str]:
    return Counter(str(o["kind"]) for o in release.objects)


def assert_namespaced_objects_have_the_namespace(release: RenderedRelease) -> None:
    for obj in release.objects:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED_KINDS:
            assert namespace is None, obj["metadata"]["name"]
        else:
            assert namespace, f"{obj['kind']} {obj['metadata']['name']} has no namespace"


@pytest.mark.parametrize(
    ("archive", "crds"),
    [("base-1.30.3.tgz", 15), ("base-1.29.6.tgz", 14)],
)
async def test_istio_base(archive: str, crds: int) -> None:
    chart = shared_fixtures() / "charts" / "istio" / archive
    release = await render_chart(chart, release_name="istio-base", namespace="istio-system")
    assert kind_counts(release) == {
        "CustomResourceDefinition": crds,
        "ValidatingWebhookConfiguration": 1,
        "ServiceAccount": 1,
    }
    assert release.hooks == ()
    # Istio marks its CRDs `helm.sh/resource-policy: keep`.
    assert len(release.kept_keys) == crds
    assert_namespaced_objects_have_the_namespace(release)


async def test_istio_istiod_demo_profile() -> None:
    chart = shared_fixtures() / "charts" / "istio" / "istiod-1.30.3.tgz"
    release = await render_chart(
        chart, release_name="istiod", namespace="istio-system", values={"profile": "demo"}
    )
    assert len(release.objects) == 16
    counts = kind_counts(release)
    assert counts["Deployment"] == 1
    assert counts["MutatingWebhookConfiguration"] == 1
    assert counts["ValidatingWebhookConfiguration"] == 1
    assert counts["ClusterRole"] == 3
    assert release.objects[-1]["kind"] == "ValidatingWebhookConfiguration"
    assert_namespaced_objects_have_the_namespace(release)


async def test_istio_gateway() -> None:
    chart = shared_fixtures() / "charts" / "istio" / "gateway-1.30.3.tgz"
    release = await render_chart(chart, release_name="ingress", namespace="istio-ingress")
    assert kind_counts(release) == {
        "Deployment": 1,
        "Service": 1,
        "HorizontalPodAutoscaler": 1,
        "Role": 1,
        "RoleBinding": 1,
        "ServiceAccount": 1,
    }
    assert_namespaced_objects_have_the_namespace(release)


async def test_consul_excludes_its_test_hook() -> None:
    chart = shared_fixtures() / "charts" / "hashicorp" / "consul-1.9.11.tgz"
    release = await render_chart(chart, release_name="consul", namespace="consul")
    # 67 objects rendered: 64 installed, 2 lifecycle hook Jobs, 1 `test-success` hook Pod.
    assert len(release.objects) == 64
    assert len(release.hooks) == 2
    assert release.skipped_test_hooks == ("Pod consul/consul-consul-test",)
    assert len(release.objects) + len(release.hooks) + len(release.skipped_test_hooks) == 67
    assert "Pod" not in kind_counts(release)
    assert kind_counts(release)["CustomResourceDefinition"] == 29
    assert kind_counts(release)["StatefulSet"] == 1
    assert [h.ref.kind for h in release.hooks_for("post-install")] == ["Job"]
    assert [h.ref.kind for h in release.hooks_for("pre-delete")] == ["Job"]
    assert_namespaced_objects_have_the_namespace(release)


async def test_linkerd_crds() -> None:
    chart = shared_fixtures() / "charts" / "linkerd" / "linkerd-crds-2026.8.3.tgz"
    release = await render_chart(chart, release_name="linkerd-crds", namespace="linkerd")
    assert kind_counts(release) == {"CustomResourceDefinition": 10}


CertificateAuthority = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def _ca(common_name: str, signer: CertificateAuthority | None) -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    signing_key, issuer = (key, name) if signer is None else (signer[0], signer[1].subject)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(signing_key, hashes.SHA256())
    )
    return key, certificate


async def test_linkerd_control_plane_with_generated_identity() -> None:
    chart = shared_fixtures() / "charts" / "linkerd" / "linkerd-control-plane-2026.8.3.tgz"
    root = _ca("root.linkerd.cluster.local", None)
    issuer_key, issuer = _ca("identity.linkerd.cluster.local", root)
    pem = serialization.Encoding.PEM
    values = {
        "identityTrustAnchorsPEM": root[1].public_bytes(pem).decode(),
        "identity": {
            "issuer": {
                "tls": {
                    "crtPEM": issuer.public_bytes(pem).decode(),
                    "keyPEM": issuer_key.private_bytes(
                        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                    ).decode(),
                }
            }
        },
    }
    release = await render_chart(
        chart, release_name="linkerd-control-plane", namespace="linkerd", values=values
    )
    assert len(release.objects) == 40
    assert release.hooks == ()
    assert release.skipped_test_hooks == ()
    assert kind_counts(release)["Deployment"] == 3  # destination, identity, proxy-injector
    assert_namespaced_objects_have_the_namespace(release)
    with pytest.raises(ChartRenderError):
        await render_chart(chart, release_name="linkerd-control-plane", namespace="linkerd")


def _capabilities_chart(root: Path) -> Path:
    """A chart that picks its PodDisruptionBudget apiVersion the way Consul's does."""
    chart = root / "caps"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: caps\nversion: 0.1.0\n")
    (chart / "templates" / "pdb.yaml").write_text(
        '{{- if .Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget" }}\n'
        "apiVersion: policy/v1\n"
        "{{- else }}\n"
        "apiVersion: policy/v1beta1\n"
        "{{- end }}\n"
        "kind: PodDisruptionBudget\n"
        "metadata:\n"
        "  name: caps\n"
        "  annotations:\n"
        "    kube-minor: {{ .Capabilities.KubeVersion.Minor | quote }}\n"
        "spec:\n"
        "  maxUnavailable: 1\n"
        "  selector: {matchLabels: {app: caps}}\n"
    )
    return chart


async def test_api_versions_reach_the_templates(tmp_path: Path) -> None:
    chart = _capabilities_chart(tmp_path)

    async def pdb(**capabilities: Any) -> KubeObject:
        release = await render_chart(chart, release_name="c", namespace="n", **capabilities)
        (obj,) = release.objects
        return obj

    # Offline, Helm's built-in set has group/versions but no kinds: the old apiVersion.
    offline = await pdb()
    assert offline["apiVersion"] == "policy/v1beta1"
    assert (await pdb(kube_version="v1.34.0"))["apiVersion"] == "policy/v1beta1"
    served = ["policy/v1", "policy/v1/PodDisruptionBudget"]
    current = await pdb(kube_version="v1.34.0", api_versions=served)
    assert current["apiVersion"] == "policy/v1"
    assert current["metadata"]["annotations"]["kube-minor"] == "34"
    # api_versions alone also work (Helm's built-in Kubernetes version stays)
    assert (await pdb(api_versions=served))["apiVersion"] == "policy/v1"
