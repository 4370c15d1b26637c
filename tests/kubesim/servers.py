"""The API server a semantics test talks to: kubesim or the real kube-apiserver, one shape.

Every test of tests/kubesim that describes Kubernetes API behaviour runs against both
(parameter `kubesim`, and `realkube` under the `realkube` marker). kubesim is fresh per test;
the real control plane is one per run, so each test gets a namespace of its own and cluster-
scoped names carry a per-test suffix (``unique``, ``group``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from kubesim.harness import RunningSim


@dataclass(frozen=True, kw_only=True)
class ApiServer:
    """One server for one test: where it is, how to reach it, and the test's own names."""

    kind: str  # "kubesim" or "realkube"
    url: str
    kubeconfig: Path
    namespace: str  # fresh for this test
    suffix: str  # unique to this test, for cluster-scoped names
    ssl_context: ssl.SSLContext | None = None  # the admin's client certificate (realkube)
    anonymous_ssl_context: ssl.SSLContext | None = None  # trusts the server, no certificate
    ca_file: Path | None = None  # what signs the serving certificate (HTTPS only)
    admin_headers: dict[str, str] = field(default_factory=dict)  # the admin, beyond TLS
    admin_user: str = ""  # who the admin kubeconfig is
    sim: RunningSim | None = None  # kubesim only

    @property
    def real(self) -> bool:
        return self.kind == "realkube"

    @property
    def group(self) -> str:
        """An API group of this test's own, for custom resource definitions."""
        return f"{self.suffix}.example.com"

    def unique(self, name: str) -> str:
        """A cluster-scoped object's name for this test."""
        return f"{name}-{self.suffix}"

    def token_args(self, token: str, scratch: Path) -> list[str]:
        """kubectl arguments that reach this server as the bearer of `token` alone (the
        admin kubeconfig's client certificate would win over a token on the real server)."""
        empty = scratch / "no-kubeconfig"
        empty.write_text("")
        args = [f"--kubeconfig={empty}", f"--server={self.url}", f"--token={token}"]
        if self.ca_file is not None:
            args.append(f"--certificate-authority={self.ca_file}")
        return args

    def kubesim(self) -> RunningSim:
        """The simulator behind a kubesim parameter (a test of kubesim's own internals)."""
        assert self.sim is not None, "only the kubesim parameter has a simulator"
        return self.sim


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """TLS trusting `ca`, presenting the client certificate when given."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context
