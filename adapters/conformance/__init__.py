"""The adapter conformance suite: proves an adapter (ours or a third party's) keeps the contract.

Run it with `meshplane conformance --adapter HOST:PORT --kubeconfig PATH`, or from Python with
`run_suite`; each check is a plain async function of a `SuiteContext` (see `checks`).
"""

from adapters.conformance.checks import CHECK_NAMES, CHECKS, Check
from adapters.conformance.cluster_view import ClusterView, ClusterViewError, ManagedObject
from adapters.conformance.reporting import as_dict, as_json, as_table
from adapters.conformance.suite import AdapterUnreachable, SuiteReport, run_suite
from adapters.conformance.suite_config import SuiteConfig
from adapters.conformance.suite_context import SuiteContext
from adapters.conformance.verdicts import CheckFailed, CheckResult, CheckSkipped, Outcome

__all__ = [
    "CHECKS",
    "CHECK_NAMES",
    "AdapterUnreachable",
    "Check",
    "CheckFailed",
    "CheckResult",
    "CheckSkipped",
    "ClusterView",
    "ClusterViewError",
    "ManagedObject",
    "Outcome",
    "SuiteConfig",
    "SuiteContext",
    "SuiteReport",
    "as_dict",
    "as_json",
    "as_table",
    "run_suite",
]
