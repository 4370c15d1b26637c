"""Performance tests in the Service Mesh Performance (SMP) shape: generate, normalise, compare.

Public surface for the coordinator (RPCs, store) and the CLI; everything else is internal.
"""

from coordinator.perf.arguments import (
    add_output_argument,
    add_run_arguments,
    config_from_arguments,
    format_progress,
    format_result,
)
from coordinator.perf.comparing import (
    Comparison,
    ComparisonCell,
    ComparisonRow,
    compare,
    comparison_document,
    comparison_table,
)
from coordinator.perf.documents import SMP_VERSION, config_document, render, result_document
from coordinator.perf.filtering import result_matches
from coordinator.perf.fortio_import import from_fortio, load_fortio_file
from coordinator.perf.generators import run_test
from coordinator.perf.identities import env_id, mesh_config_id, new_id
from coordinator.perf.messages import (
    comparison_to_proto,
    config_from_proto,
    config_to_proto,
    progress_to_proto,
    result_from_proto,
    result_to_proto,
)
from coordinator.perf.results import (
    ClientConfig,
    EnvironmentInfo,
    HistogramBucket,
    LatencySummary,
    LoadGenerator,
    MeshInfo,
    PerformanceResult,
    Progress,
    Protocol,
    TestConfig,
)
from coordinator.perf.running import ProgressCallback, run_builtin
from coordinator.perf.wrk_generator import WrkUnavailableError, run_wrk, wrk_path

__all__ = [
    "SMP_VERSION",
    "ClientConfig",
    "Comparison",
    "ComparisonCell",
    "ComparisonRow",
    "EnvironmentInfo",
    "HistogramBucket",
    "LatencySummary",
    "LoadGenerator",
    "MeshInfo",
    "PerformanceResult",
    "Progress",
    "ProgressCallback",
    "Protocol",
    "TestConfig",
    "WrkUnavailableError",
    "add_output_argument",
    "add_run_arguments",
    "compare",
    "comparison_document",
    "comparison_table",
    "comparison_to_proto",
    "config_document",
    "config_from_arguments",
    "config_from_proto",
    "config_to_proto",
    "env_id",
    "format_progress",
    "format_result",
    "from_fortio",
    "load_fortio_file",
    "mesh_config_id",
    "new_id",
    "progress_to_proto",
    "render",
    "result_document",
    "result_from_proto",
    "result_matches",
    "result_to_proto",
    "run_builtin",
    "run_test",
    "run_wrk",
    "wrk_path",
]
