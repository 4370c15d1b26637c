"""Service cluster IPs and node ports, handed out as the apiserver's allocators do."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator

from kubesim.objects import Obj
from kubesim.store import Store

SERVICES = ("", "services")
_SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")


class ServiceAllocator:
    """The cluster IPs and node ports in use (read from the stored Services on first use)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._used_ips: set[str] = set()
        self._used_node_ports: set[int] = set()
        self._next_ip = 10
        self._next_node_port = 30000

    @contextlib.contextmanager
    def allocating(self, *, dry_run: bool) -> Iterator[None]:
        """Around allocating cluster IPs and node ports: a dry run's are handed out but not
        reserved (the apiserver's allocators run in dry-run mode), so the next write can get
        the same ones."""
        if not dry_run:
            yield
            return
        ips, next_ip = set(self._used_ips), self._next_ip
        ports, next_port = set(self._used_node_ports), self._next_node_port
        try:
            yield
        finally:
            self._used_ips, self._next_ip = ips, next_ip
            self._used_node_ports, self._next_node_port = ports, next_port

    def allocate(self, service: Obj) -> None:
        """A new Service's cluster IP and node ports, where it does not name them."""
        spec = service["spec"]
        if spec.get("type") == "ExternalName":
            return
        if not spec.get("clusterIP"):
            spec["clusterIP"] = self._allocate_ip()
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            for port in spec.get("ports") or []:
                if isinstance(port, dict) and not port.get("nodePort"):
                    port["nodePort"] = self._allocate_node_port()

    def keep(self, old: Obj, new: Obj) -> None:
        """An updated Service keeps the cluster IP and node ports it had, unless it names others."""
        old_spec, spec = old.get("spec") or {}, new.setdefault("spec", {})
        if spec.get("type") == "ExternalName":
            return
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
            spec.setdefault("clusterIPs", old_spec.get("clusterIPs") or [old_spec["clusterIP"]])
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            old_ports = {p.get("port"): p.get("nodePort") for p in old_spec.get("ports") or []}
            for port in spec.get("ports") or []:
                if isinstance(port, dict) and not port.get("nodePort"):
                    port["nodePort"] = old_ports.get(port.get("port")) or (
                        self._allocate_node_port()
                    )
        self.allocate(new)

    def release(self, service: Obj) -> None:
        """A deleted Service's cluster IP may be handed out again."""
        self._used_ips.discard(service.get("spec", {}).get("clusterIP", ""))

    def _allocate_ip(self) -> str:
        if not self._used_ips:
            for svc in self.store.objects(SERVICES):
                self._used_ips.add(svc.get("spec", {}).get("clusterIP", ""))
        while True:
            ip = str(_SERVICE_CIDR[self._next_ip])
            self._next_ip += 1
            if ip not in self._used_ips:
                self._used_ips.add(ip)
                return ip

    def _allocate_node_port(self) -> int:
        if not self._used_node_ports:
            for svc in self.store.objects(SERVICES):
                for port in svc.get("spec", {}).get("ports") or []:
                    self._used_node_ports.add(int(port.get("nodePort") or 0))
        while self._next_node_port in self._used_node_ports:
            self._next_node_port += 1
        self._used_node_ports.add(self._next_node_port)
        return self._next_node_port
