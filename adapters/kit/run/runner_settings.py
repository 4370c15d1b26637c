"""How the operation runner is tuned: the default cluster and timeout, how many operations run
at once, how long a cancel waits, and the operator's kubeconfig and object policies."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.kit.model.object_policy import ObjectPolicy
from adapters.kit.model.records import ClusterTarget
from adapters.kit.model.request_kubeconfigs import RequestKubeconfigPolicy

__all__ = ["DEFAULT_CLUSTER", "RunnerSettings"]

DEFAULT_CLUSTER = "default"
"""The name of the adapter's own cluster, used when a request names none."""


@dataclass(frozen=True, kw_only=True)
class RunnerSettings:
    """The runner's policies; the defaults suit tests and a single-cluster adapter."""

    default_cluster: ClusterTarget = field(
        default_factory=lambda: ClusterTarget(name=DEFAULT_CLUSTER)
    )
    """The cluster a request without clusters runs on."""
    default_timeout: float = 900.0
    """Seconds an operation may run when its request sets no timeout."""
    max_concurrent: int = 4
    """Operations (and dry runs) running at once; more wait, PENDING."""
    cancel_wait_seconds: float = 10.0
    """How long CancelOperation waits for the operation to stop before it answers."""
    kubeconfig_policy: RequestKubeconfigPolicy = field(default_factory=RequestKubeconfigPolicy)
    """Whether (and which) kubeconfigs sent in requests are accepted."""
    object_policy: ObjectPolicy = field(default_factory=ObjectPolicy)
    """The namespaces and kinds operations may touch."""

    def __post_init__(self) -> None:
        if self.default_timeout <= 0:
            raise ValueError("default_timeout must be positive")
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
