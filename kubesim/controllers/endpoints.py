"""Simulated service controllers: load balancer addresses, Endpoints and EndpointSlices."""

from __future__ import annotations

from typing import Any

from kubesim.controllers.reconciling import (
    ENDPOINTS,
    LB_PREFIX,
    NODE_NAME,
    PODS,
    SERVICES,
    SLICES,
    ControllerBase,
    owner_ref,
    pod_ready,
    template_hash,
)
from kubesim.objects import Obj
from kubesim.selectors import Requirement, labels_match


class ServiceControllers(ControllerBase):
    # --- services and endpoints -----------------------------------------------------------

    def _service(self, ns: str, name: str) -> None:
        svc = self._get(SERVICES, ns, name)
        if svc is None:
            for sk in (ENDPOINTS,):
                if (ep := self._get(sk, ns, name)) is not None:
                    self._delete(sk, ep)
            return
        if svc["spec"].get("type") == "LoadBalancer" and not (svc.get("status") or {}).get(
            "loadBalancer", {}
        ).get("ingress"):
            ip = f"{LB_PREFIX}{self._lb_ips}"
            self._lb_ips = self._lb_ips + 1 if self._lb_ips < 250 else 10
            self._set_status(
                SERVICES, svc, {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}
            )
        self._endpoints(svc)

    def _endpoints_for_namespace(self, ns: str, _: str) -> None:
        for svc in self.cluster.store.objects(SERVICES, ns):
            self._endpoints(svc)

    def _endpoints(self, svc: Obj) -> None:
        selector = svc["spec"].get("selector")
        if not selector or svc["spec"].get("type") == "ExternalName":
            return
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        reqs: list[Requirement] = [
            Requirement(key=k, op="=", values=(str(v),)) for k, v in selector.items()
        ]
        pods = [
            p
            for p in self.cluster.store.objects(PODS, ns)
            if labels_match(reqs, p["metadata"].get("labels") or {})
            and (p.get("status") or {}).get("podIP")
            and not p["metadata"].get("deletionTimestamp")
        ]
        pods.sort(key=lambda p: p["metadata"]["name"])
        ports = [self._endpoint_port(port, pods) for port in svc["spec"].get("ports") or []]
        self._upsert(ENDPOINTS, ns, name, _endpoints_object(svc, pods, ports))
        endpoint_slice = _endpoint_slice(svc, pods, ports)
        self._upsert(SLICES, ns, endpoint_slice["metadata"]["name"], endpoint_slice)

    @staticmethod
    def _endpoint_port(port: dict[str, Any], pods: list[Obj]) -> dict[str, Any]:
        target = port.get("targetPort", port.get("port"))
        if isinstance(target, str):
            resolved = None
            for pod in pods:
                for container in pod.get("spec", {}).get("containers") or []:
                    for cport in container.get("ports") or []:
                        if cport.get("name") == target:
                            resolved = cport.get("containerPort")
            target = resolved if resolved is not None else port.get("port")
        out = {"port": target, "protocol": port.get("protocol", "TCP")}
        if port.get("name"):
            out["name"] = port["name"]
        if port.get("appProtocol"):
            out["appProtocol"] = port["appProtocol"]
        return out


def _pod_reference(pod: Obj) -> dict[str, Any]:
    md = pod["metadata"]
    return {"kind": "Pod", "namespace": md["namespace"], "name": md["name"], "uid": md["uid"]}


def _endpoints_object(svc: Obj, pods: list[Obj], ports: list[dict[str, Any]]) -> Obj:
    """The Service's Endpoints: one subset of its ready and not-ready pods' addresses."""

    def address(pod: Obj) -> dict[str, Any]:
        return {
            "ip": pod["status"]["podIP"],
            "nodeName": NODE_NAME,
            "targetRef": _pod_reference(pod),
        }

    ready = [p for p in pods if pod_ready(p)]
    not_ready = [p for p in pods if not pod_ready(p)]
    subset: dict[str, Any] = {}
    if ready:
        subset["addresses"] = [address(p) for p in ready]
    if not_ready:
        subset["notReadyAddresses"] = [address(p) for p in not_ready]
    if subset and ports:
        subset["ports"] = [{k: v for k, v in p.items() if k != "appProtocol" or v} for p in ports]
    md = svc["metadata"]
    endpoints: Obj = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": md["name"],
            "namespace": md["namespace"],
            "labels": dict(md.get("labels") or {}),
        },
    }
    if subset:
        endpoints["subsets"] = [subset]
    return endpoints


def _endpoint_slice(svc: Obj, pods: list[Obj], ports: list[dict[str, Any]]) -> Obj:
    """The Service's one EndpointSlice, as the EndpointSlice controller names and labels it."""
    md = svc["metadata"]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{md['name']}-{template_hash(md['uid'])[:5]}",
            "namespace": md["namespace"],
            "labels": {
                **(md.get("labels") or {}),
                "kubernetes.io/service-name": md["name"],
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
            "ownerReferences": [owner_ref(svc)],
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [p["status"]["podIP"]],
                "conditions": {
                    "ready": pod_ready(p),
                    "serving": pod_ready(p),
                    "terminating": False,
                },
                "nodeName": NODE_NAME,
                "targetRef": _pod_reference(p),
            }
            for p in pods
        ],
        "ports": ports,
    }
