"""Consul's own test workloads, static-server and static-client, built from parameters.

They follow hashicorp/consul-k8s's acceptance fixtures (`bases/static-server`,
`bases/static-client`): a Deployment, a Service and a ServiceAccount each. They are built here
rather than fetched because upstream keeps them as separate kustomize files (no single URL holds
one app) and the shipped mirror copy of static-client.yaml does not parse (two documents joined
without a newline); building them keeps both operations working from any manifest location.
The client carries the connect-inject annotations of upstream's `static-client-inject` overlay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adapters.kit import (
    KubeObject,
    PlanContext,
)

SERVER = "static-server"
CLIENT = "static-client"
SERVER_IMAGE = "docker.mirror.hashicorp.services/hashicorp/http-echo:alpine"
CLIENT_IMAGE = "docker.mirror.hashicorp.services/buildpack-deps:jammy-curl"
INJECT_ANNOTATION = "consul.hashicorp.com/connect-inject"
UPSTREAMS_ANNOTATION = "consul.hashicorp.com/connect-service-upstreams"
TEXT_PARAMETER = "text"
UPSTREAM_PORT_PARAMETER = "upstream-port"

_SECURITY_CONTEXT: Mapping[str, Any] = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
    "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
}


def _app(
    name: str,
    namespace: str,
    container: Mapping[str, Any],
    ports: Sequence[Mapping[str, Any]],
    annotations: Mapping[str, str],
) -> list[KubeObject]:
    """Deployment (one replica), Service and ServiceAccount named ``name``, as upstream."""
    template_metadata: dict[str, Any] = {"name": name, "labels": {"app": name}}
    if annotations:
        template_metadata["annotations"] = dict(annotations)
    metadata = {"name": name, "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(metadata)},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": dict(metadata),
            "spec": {"selector": {"app": name}, "ports": [dict(p) for p in ports]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": dict(metadata),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": template_metadata,
                    "spec": {
                        "containers": [
                            {"name": name, "securityContext": dict(_SECURITY_CONTEXT), **container}
                        ],
                        "serviceAccountName": name,
                        "terminationGracePeriodSeconds": 0,
                    },
                },
            },
        },
    ]


async def static_server(ctx: PlanContext) -> Sequence[KubeObject]:
    """http-echo answering every request with the ``text`` parameter on port 80 (8080 inside)."""
    text = ctx.parameters.get(TEXT_PARAMETER) or "hello world"
    container = {
        "image": SERVER_IMAGE,
        "args": [f'-text="{text}"', "-listen=:8080"],
        "ports": [{"containerPort": 8080, "name": "http"}],
    }
    ports = [{"name": "http", "port": 80, "targetPort": 8080}]
    return _app(SERVER, ctx.namespace, container, ports, {})


async def static_client(ctx: PlanContext) -> Sequence[KubeObject]:
    """A curl-capable pod meshed with static-server as its upstream on ``upstream-port``."""
    port = ctx.parameters.get(UPSTREAM_PORT_PARAMETER) or "1234"
    container = {
        "image": CLIENT_IMAGE,
        "command": ["/bin/sh", "-c", "--"],
        "args": ["while true; do sleep 30; done;"],
        "env": [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}],
    }
    annotations = {INJECT_ANNOTATION: "true", UPSTREAMS_ANNOTATION: f"{SERVER}:{port}"}
    return _app(CLIENT, ctx.namespace, container, [{"port": 80}], annotations)
