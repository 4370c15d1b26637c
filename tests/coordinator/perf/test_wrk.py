"""wrk runs normalised to the same result; refused configs say why."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from coordinator.perf import (
    ClientConfig,
    LoadGenerator,
    Protocol,
    TestConfig,
    new_id,
    run_test,
    run_wrk,
    wrk_path,
)
from coordinator.perf.wrk_generator import normalise, parse_report
from tests.coordinator.perf.conftest import LoopbackServer

needs_wrk = pytest.mark.skipif(
    wrk_path() is None, reason="wrk is not installed (apt-get install wrk; CI installs it)"
)


def _config(url: str, *, rps: float = 0.0, **kwargs: float) -> TestConfig:
    client = ClientConfig(
        protocol=Protocol.HTTP,
        endpoint_urls=(url,),
        connections=4,
        rps=rps,
        load_generator=LoadGenerator.WRK,
        headers={"X-Test": 'quote " and tab\t'},
    )
    return TestConfig(id=new_id(), clients=(client,), duration_s=1.0, **kwargs)  # type: ignore[arg-type]


@needs_wrk
async def test_wrk_run_is_normalised(http_server: LoopbackServer) -> None:
    result = await run_test(_config(http_server.url()))

    assert result.load_generator is LoadGenerator.WRK
    assert result.request_count > 1000
    assert result.error_count == 0
    assert result.http_status_counts == {"1xx-3xx": result.request_count}
    assert result.actual_qps == pytest.approx(
        result.request_count / (result.end_time - result.start_time).total_seconds()
    )
    latencies = result.latencies
    assert 0 < latencies.min_ms <= latencies.p50_ms <= latencies.p99_ms <= latencies.max_ms
    assert latencies.p50_ms < 50  # ms, not us
    counted = sum(b.count for b in result.histogram)
    assert counted == result.request_count


@needs_wrk
async def test_wrk_counts_http_errors(http_server: LoopbackServer) -> None:
    result = await run_wrk(_config(http_server.url("/missing")))

    assert result.request_count > 0
    assert result.http_status_counts == {"4xx-5xx": result.request_count}
    assert result.error_count == result.request_count


async def test_wrk_refuses_constant_rate() -> None:
    with pytest.raises(ValueError, match="no constant-rate mode"):
        await run_wrk(_config("http://127.0.0.1:1/", rps=100))


async def test_wrk_refuses_request_count() -> None:
    with pytest.raises(ValueError, match="request count"):
        await run_wrk(_config("http://127.0.0.1:1/", request_count=10))


def test_report_line_is_parsed_and_converted_to_ms() -> None:
    quantiles = ",".join(["100"] * 500 + ["200"] * 490 + ["900"] * 9 + ["5000"])
    line = (
        'MESHPLANE_WRK_JSON {"duration_us":2000000,"requests":4000,"bytes":1,'
        '"errors":{"connect":0,"read":1,"write":0,"status":10,"timeout":2},'
        '"min_us":50,"max_us":5000,"mean_us":180.5,"stdev_us":40.25,'
        '"p50_us":100,"p75_us":200,"p90_us":200,"p99_us":900,"p999_us":5000,'
        f'"quantiles_us":[{quantiles}]}}'
    )
    report = parse_report("Running 2s test\n" + line + "\n")
    started = datetime(2026, 1, 1, tzinfo=UTC)

    result = normalise(report, _config("http://x/"), started=started)

    assert result.latencies.p50_ms == pytest.approx(0.1)
    assert result.latencies.p99_ms == pytest.approx(0.9)
    assert result.latencies.max_ms == pytest.approx(5.0)
    assert result.latencies.average_ms == pytest.approx(0.1805)
    assert result.actual_qps == pytest.approx(2000)
    assert result.error_count == 13
    assert result.transport_error_counts == {"read": 1, "timeout": 2}
    assert result.http_status_counts == {"1xx-3xx": 3990, "4xx-5xx": 10}
    assert sum(b.count for b in result.histogram) == 4000
    first = result.histogram[0]
    assert first.start_ms <= 0.1 < first.end_ms
    assert first.count == 2000


def test_missing_report_line() -> None:
    with pytest.raises(ValueError, match="no summary line"):
        parse_report("Running 1s test\n")
