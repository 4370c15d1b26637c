"""Steps of the runner on their own: parameter checks, final records, the event window."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.kit.declare.operations import Category, OperationSpec
from adapters.kit.declare.parameters import Parameter
from adapters.kit.model.records import (
    ClusterResult,
    ErrorDetail,
    OperationRecord,
    OperationState,
    Severity,
)
from adapters.kit.run.event_retention import RetainedEvents
from adapters.kit.run.events import Event
from adapters.kit.run.operation_outcomes import final_record, settled_result
from adapters.kit.run.parameter_checks import checked_parameters
from adapters.kit.run.request_errors import InvalidArgument

SPEC = OperationSpec(
    id="sample",
    category=Category.SAMPLE_APPLICATION,
    description="a sample",
    default_namespace="default",
    parameters=(
        Parameter(name="size", description="how big", allowed=("s", "m"), default="s"),
        Parameter(name="owner", description="who owns it", required=True),
        Parameter(
            name="label",
            description="a label",
            check=lambda value: "" if value.isalpha() else "letters only",
        ),
    ),
    supports_delete=False,
)


def test_parameters_get_defaults_and_refusals_name_the_parameter() -> None:
    assert checked_parameters(SPEC, {"owner": "me"})["size"] == "s"
    cases = {
        "parameters.colour": {"owner": "me", "colour": "red"},
        "parameters.owner": {},
        "parameters.size": {"owner": "me", "size": "xl"},
        "parameters.label": {"owner": "me", "label": "a1"},
    }
    for field, sent in cases.items():
        with pytest.raises(InvalidArgument) as refused:
            checked_parameters(SPEC, sent)
        assert refused.value.field == field


def _record(*results: ClusterResult) -> OperationRecord:
    return OperationRecord(
        operation_id="op",
        operation="sample",
        mesh="toy",
        mesh_version="",
        namespace="default",
        delete=False,
        parameters={},
        username="",
        state=OperationState.RUNNING,
        clusters=tuple(r.cluster for r in results),
        cluster_results=results,
        create_time=datetime.now(UTC),
    )


def test_a_failed_operation_without_its_own_error_takes_its_first_clusters() -> None:
    error = ErrorDetail(code="X", message="broke")
    record = _record(
        ClusterResult(cluster="a", state=OperationState.FAILED, error=error),
        ClusterResult(cluster="b", state=OperationState.RUNNING),
    )
    ended = final_record(record, OperationState.FAILED, None)
    assert ended.error == error
    assert [r.state for r in ended.cluster_results] == [OperationState.FAILED] * 2
    assert ended.end_time is not None
    interrupted = final_record(record, OperationState.INTERRUPTED, None)
    assert interrupted.cluster_results[1].state is OperationState.INTERRUPTED


def test_a_result_that_is_not_final_becomes_failed_for_its_cluster() -> None:
    settled = settled_result(ClusterResult(cluster="x", state=OperationState.RUNNING), "b")
    assert settled.cluster == "b"
    assert settled.state is OperationState.FAILED
    assert settled.error is not None and "RUNNING" in settled.error.message


def _event(sequence: int) -> Event:
    return Event(
        sequence=sequence,
        operation_id=f"op-{sequence % 2}",
        severity=Severity.INFO,
        summary="s",
        timestamp=datetime.now(UTC),
        mesh="toy",
        stream_id="s",
    )


def test_the_window_drops_the_oldest_past_either_bound_but_keeps_the_newest() -> None:
    window = RetainedEvents(count=3, size_bytes=100)
    for sequence in range(1, 6):
        window.keep(_event(sequence), 10)
    assert [e.sequence for e in window] == [3, 4, 5]
    assert window.bytes == 30
    assert [e.sequence for e in window.after(3, "op-1")] == [5]
    window.keep(_event(6), 500)
    assert [e.sequence for e in window] == [6]
    assert window.oldest_sequence == 6
    with pytest.raises(ValueError, match="at least 1"):
        RetainedEvents(count=0, size_bytes=1)
