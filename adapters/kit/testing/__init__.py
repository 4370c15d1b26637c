"""Test utilities for adapters built on the kit: public API, as `aiohttp.test_utils` and
`temporalio.testing` are for theirs.

An integrator tests an adapter the way a platform runs it: as a `meshplane adapter MESH`
process (`AdapterProcess`), over gRPC (`AdapterClient`: apply, wait, run), following its event
stream (`EventCollector`), and checking what it left in the cluster (`managed_objects`, for
kubesim or any API server reached through a kubeconfig). meshplane's own tests use the same.
"""

from adapters.kit.testing.client import TERMINAL, AdapterClient, OperationDidNotSucceed
from adapters.kit.testing.cluster_objects import managed_objects
from adapters.kit.testing.events import EventCollector
from adapters.kit.testing.process import MESHPLANE, AdapterProcess

__all__ = [
    "MESHPLANE",
    "TERMINAL",
    "AdapterClient",
    "AdapterProcess",
    "EventCollector",
    "OperationDidNotSucceed",
    "managed_objects",
]
