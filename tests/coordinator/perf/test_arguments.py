"""`meshplane perf run` flags -> TestConfig, and result output as table / JSON / YAML."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from coordinator.perf import LoadGenerator, Protocol, load_fortio_file
from coordinator.perf.arguments import (
    add_run_arguments,
    config_from_arguments,
    format_result,
    parse_duration,
)
from tests.fixtures_paths import OWN_FIXTURES


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser.parse_args(list(argv))


def test_http_flags() -> None:
    args = _parse(
        "--url=http://svc:8080/get",
        "--rps=500",
        "--connections=8",
        "--duration=3s",
        "-H",
        "X-Trace: on",
        "--label",
        "mesh=istio",
        "--generator=wrk",
        "-o",
        "yaml",
    )

    config = config_from_arguments(args)

    client = config.clients[0]
    assert client.protocol is Protocol.HTTP
    assert client.load_generator is LoadGenerator.WRK
    assert (client.rps, client.connections, config.duration_s) == (500, 8, 3.0)
    assert client.headers == {"X-Trace": "on"}
    assert config.labels == {"mesh": "istio"}
    assert args.output == "yaml"
    assert len(config.id) == 36


def test_grpc_flags() -> None:
    config = config_from_arguments(
        _parse("--url=127.0.0.1:9000", "--grpc-method=pkg.Svc/Call", "-n", "100", "--body={}")
    )

    client = config.clients[0]
    assert client.protocol is Protocol.GRPC
    assert client.grpc_method == "pkg.Svc/Call"
    assert config.request_count == 100


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1.5", 1.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration_and_header() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("soon")
    with pytest.raises(argparse.ArgumentTypeError, match="KEY:VALUE"):
        config_from_arguments(_parse("--url=http://x/", "-H", "novalue"))


def test_result_outputs() -> None:
    result = load_fortio_file(OWN_FIXTURES / "perf" / "fortio-http.json")

    table = format_result(result)
    assert "p99 8.330" in table
    assert "200: 990" in table
    assert json.loads(format_result(result, "json"))["latencies_ms"]["p99"] == pytest.approx(8.33)
    assert yaml.safe_load(format_result(result, "yaml"))["id"] == result.id
