"""Compare, SMP documents, ids, and lossless proto round trips (what the store keeps)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from coordinator.perf import (
    EnvironmentInfo,
    MeshInfo,
    PerformanceResult,
    compare,
    comparison_document,
    comparison_table,
    comparison_to_proto,
    config_from_proto,
    env_id,
    load_fortio_file,
    mesh_config_id,
    render,
    result_document,
    result_from_proto,
    result_to_proto,
)
from meshplane.perf.v1 import perf_pb2
from tests.fixtures_paths import OWN_FIXTURES

FORTIO_HTTP = OWN_FIXTURES / "perf" / "fortio-http.json"


def _baseline() -> PerformanceResult:
    return load_fortio_file(
        FORTIO_HTTP,
        mesh=MeshInfo(type="none"),
        environment=EnvironmentInfo(kubernetes_version="v1.33.1", node_count=3),
    )


def _slower(base: PerformanceResult, factor: float) -> PerformanceResult:
    latencies = dataclasses.replace(
        base.latencies,
        p50_ms=base.latencies.p50_ms * factor,
        p99_ms=base.latencies.p99_ms * factor,
    )
    return dataclasses.replace(
        base, id=f"{factor}-result", latencies=latencies, actual_qps=base.actual_qps / factor
    )


def test_compare_rows_have_relative_difference_vs_first() -> None:
    base = _baseline()
    comparison = compare([base, _slower(base, 1.5), _slower(base, 0.5)])

    rows = {row.metric: row for row in comparison.rows}
    assert list(rows) == ["p50", "p75", "p90", "p99", "p99.9", "max", "avg", "qps"]
    p50 = rows["p50"].cells
    assert p50[0].relative_difference is None
    assert p50[1].relative_difference == pytest.approx(0.5)
    assert p50[2].relative_difference == pytest.approx(-0.5)
    assert rows["p75"].cells[1].relative_difference == pytest.approx(0.0)
    assert rows["qps"].unit == "req/s"
    assert rows["qps"].cells[1].value == pytest.approx(base.actual_qps / 1.5)

    table = comparison_table(comparison)
    assert table.splitlines()[0].split()[:2] == ["metric", "unit"]
    assert "+50.0%" in table
    assert "-50.0%" in table

    document = json.loads(json.dumps(comparison_document(comparison)))
    assert document["ids"] == [base.id, "1.5-result", "0.5-result"]
    assert document["rows"][0]["cells"][1]["relative_difference"] == pytest.approx(0.5)

    message = comparison_to_proto(comparison)
    assert not message.rows[0].cells[0].HasField("relative_difference")
    assert message.rows[0].cells[1].relative_difference == pytest.approx(0.5)


def test_compare_needs_two_results() -> None:
    with pytest.raises(ValueError, match="at least two"):
        compare([_baseline()])


def test_result_survives_serialisation() -> None:
    result = _baseline()

    stored = result_to_proto(result).SerializeToString()
    restored = result_from_proto(perf_pb2.PerformanceResult.FromString(stored))

    assert restored == result


def test_unspecified_protocol_is_rejected() -> None:
    message = perf_pb2.PerformanceTestConfig(
        clients=[perf_pb2.PerformanceTestClient(endpoint_urls=["http://x/"])]
    )
    with pytest.raises(ValueError, match="unspecified"):
        config_from_proto(message, default_id="t")


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_smp_document_is_in_milliseconds(output: str) -> None:
    result = _baseline()

    text = render(result_document(result), output)
    document = json.loads(text) if output == "json" else yaml.safe_load(text)

    assert document["smp_version"] == "v0.6.1"
    assert document["latencies_ms"]["p50"] == pytest.approx(1.75)
    assert document["latencies_ms"]["max"] == pytest.approx(41.5)
    assert document["start_time"] == "2026-03-02T10:15:30.123456Z"
    assert document["mesh_config_id"] == mesh_config_id(MeshInfo(type="none"))
    assert document["env_id"] == env_id(EnvironmentInfo(kubernetes_version="v1.33.1", node_count=3))
    assert document["request_count"] == 1000
    assert document["config"]["clients"][0]["protocol"] == "HTTP"


def test_derived_ids_are_stable_and_distinct() -> None:
    istio = MeshInfo(type="istio", version="1.30.3", adapter="a:1")
    assert mesh_config_id(istio) == mesh_config_id(MeshInfo(type="Istio", version="1.30.3"))
    assert mesh_config_id(istio) != mesh_config_id(MeshInfo(type="istio", version="1.29.6"))
    assert mesh_config_id(None) == mesh_config_id(MeshInfo(type="none"))
    three = EnvironmentInfo(kubernetes_version="v1.33.1", node_count=3)
    assert env_id(three) != env_id(EnvironmentInfo(kubernetes_version="v1.33.1", node_count=4))
    assert len({mesh_config_id(istio), env_id(three)}) == 2


def test_list_filters() -> None:
    from datetime import timedelta

    from coordinator.perf import result_matches

    result = dataclasses.replace(
        _baseline(), labels={"team": "a", "run": "1"}, mesh=MeshInfo(type="istio")
    )
    start = result.start_time

    assert result_matches(result)
    assert result_matches(result, labels={"team": "a"}, mesh_type="Istio", test_id=result.test_id)
    assert not result_matches(result, labels={"team": "b"})
    assert not result_matches(result, test_id="other")
    assert not result_matches(result, mesh_type="linkerd")
    assert result_matches(result, started_after=start, started_before=start + timedelta(seconds=1))
    assert not result_matches(result, started_before=start)
    assert not result_matches(result, started_after=start + timedelta(seconds=1))
