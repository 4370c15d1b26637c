"""`meshplane perf` end to end: the coordinator and every CLI call are separate processes.

A coordinator process (`meshplane coordinator`) on a SQLite file, the perf tests' loopback HTTP
server, and the CLI: `run --output json` and `compare` as their own processes, the other calls
through the same entry point in-process (run as YAML, results, get, compare as JSON, errors,
import a fortio file), then a coordinator restart on the same data dir.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshplane_cli.main import main
from serving.logging_setup import reset_logging
from tests.coordinator.identities import ADMIN, write_token_file
from tests.coordinator.perf.conftest import LoopbackServer, start_server, stop_server
from tests.fixtures_paths import OWN_FIXTURES, PROJECT_ROOT

FORTIO_HTTP = OWN_FIXTURES / "perf" / "fortio-http.json"
CLI = [sys.executable, "-c", "import sys; from meshplane_cli.main import main; sys.exit(main())"]
SMP_RESULT_FIELDS = {
    "id",
    "labels",
    "start_time",
    "end_time",
    "latencies_ms",
    "actual_qps",
    "test_id",
    "mesh_config_id",
    "env_id",
}
_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def http_target() -> Iterator[LoopbackServer]:
    """The perf tests' loopback HTTP/1.1 server, in its own process."""
    process, server = start_server("http")
    try:
        yield server
    finally:
        stop_server(process)


class CoordinatorProcess:
    """`meshplane coordinator` on port 0 with a data dir; restartable on the same dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.process: subprocess.Popen[str] | None = None
        self.address = ""

    def start(self) -> str:
        self.process = subprocess.Popen(
            [
                *CLI,
                "coordinator",
                "--port=0",
                f"--data-dir={self.data_dir}",
                f"--token-auth-file={write_token_file(self.data_dir / 'auth')}",
                "--log-level=warning",
            ],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        self.address = json.loads(line)["grpc"]
        return self.address

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            assert self.process.wait(timeout=30) == 0
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None


@pytest.fixture
def coordinator_process(tmp_path: Path) -> Iterator[CoordinatorProcess]:
    """A started coordinator process; stopped at the end whatever happened."""
    running = CoordinatorProcess(tmp_path / "coordinator")
    running.start()
    try:
        yield running
    finally:
        running.stop()


def perf(coordinator: CoordinatorProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`meshplane perf ARGS` in its own process, as a user's shell would run it."""
    return subprocess.run(
        [*CLI, "perf", *args],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "MESHPLANE_COORDINATOR": coordinator.address,
            "MESHPLANE_TOKEN": ADMIN.token,
        },
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def ok(completed: subprocess.CompletedProcess[str]) -> str:
    """stdout of a command that must have succeeded."""
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


class InProcess:
    """The same `meshplane perf` entry point called in this process (each CLI process costs
    seconds of imports on a busy machine); stdout/stderr captured per call."""

    def __init__(
        self,
        coordinator: CoordinatorProcess,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self._coordinator = coordinator
        self._capsys = capsys
        self._monkeypatch = monkeypatch

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self._monkeypatch.setenv("MESHPLANE_COORDINATOR", self._coordinator.address)
        self._monkeypatch.setenv("MESHPLANE_TOKEN", ADMIN.token)
        self._capsys.readouterr()
        try:
            code = main(["perf", *args])
        finally:
            reset_logging()  # `perf import` configures logging for its process
        captured = self._capsys.readouterr()
        return code, captured.out, captured.err

    def ok(self, *args: str) -> str:
        code, out, err = self(*args)
        assert code == 0, err
        return out


def _is_uuid(text: Any) -> bool:
    try:
        uuid.UUID(str(text))
    except ValueError:
        return False
    return True


def assert_smp_document_of_the_baseline(document: dict[str, Any]) -> None:
    """The 400-request baseline run at 200 req/s against /delay/2, as an SMP result."""
    assert set(document) >= SMP_RESULT_FIELDS
    assert document["smp_version"] == "v0.6.1"
    assert all(_is_uuid(document[key]) for key in ("id", "test_id", "mesh_config_id", "env_id"))
    assert _UTC.match(document["start_time"]) and _UTC.match(document["end_time"])
    latencies = document["latencies_ms"]
    assert {"min", "average", "p50", "p90", "p99", "max"} <= set(latencies)
    assert 2.0 <= latencies["p50"] < 100.0  # /delay/2 holds each response 2 ms: milliseconds
    assert latencies["min"] <= latencies["p50"] <= latencies["p99"] <= latencies["max"]
    assert document["request_count"] == 400
    assert document["requested_qps"] == 200
    assert document["actual_qps"] == pytest.approx(200, rel=0.1)
    assert document["http_status_counts"] == {"200": 400}
    assert document["labels"] == {"side": "baseline"}
    assert document["config"]["clients"][0]["protocol"] == "HTTP"


def assert_results_are_listed_newest_first(cli: InProcess, slower: str, baseline: str) -> None:
    """`results`: newest first, as documents and as a table; filtered by label."""
    listed = json.loads(cli.ok("results", "--output=json"))["results"]
    assert [d["id"] for d in listed] == [slower, baseline]
    table = cli.ok("results").splitlines()
    assert table[0].split()[0] == "ID"
    assert table[0].split()[:5] == ["ID", "NAME", "STARTED", "MESH", "LOAD"]
    assert "ERRORS" in table[0].split()
    assert [line.split()[0] for line in table[1:]] == [slower[:8], baseline[:8]]
    assert "200 req/s, 2s, 4 conn" in table[2]
    labelled = json.loads(cli.ok("results", "--label=side=baseline", "-o", "json"))["results"]
    assert [d["id"] for d in labelled] == [baseline]


def assert_compare_is_relative_to_the_baseline(
    co: CoordinatorProcess, cli: InProcess, first: dict[str, Any], second: dict[str, Any]
) -> list[str]:
    """`compare`: one row per metric, the other result relative to the baseline; its lines."""
    baseline, slower = first["id"], second["id"]
    compared = ok(perf(co, "compare", baseline, slower)).splitlines()
    assert compared[0].split() == ["metric", "unit", baseline[:8], slower[:8]]
    rows = {line.split()[0]: line for line in compared[1:]}
    assert {"p50", "p90", "p99", "p99.9", "qps"} <= set(rows)
    p50_before = first["latencies_ms"]["p50"]
    expected = (second["latencies_ms"]["p50"] - p50_before) / p50_before
    assert f"({expected * 100:+.1f}%)" in rows["p50"]
    as_json = json.loads(cli.ok("compare", baseline, slower, "-o", "json"))
    p50 = next(row for row in as_json["rows"] if row["metric"] == "p50")
    assert p50["cells"][0]["relative_difference"] is None
    assert p50["cells"][1]["relative_difference"] == pytest.approx(expected)
    return compared


def assert_errors_say_what_is_wrong(
    cli: InProcess, http_target: LoopbackServer, baseline: str
) -> None:
    """Unknown ids, a refused run and a one-sided compare exit non-zero, naming why."""
    code, _, err = cli("get", "no-such-id")
    assert code == 2 and "no stored result has the id, id prefix or name 'no-such-id'" in err
    code, _, err = cli("get", str(uuid.uuid4()))
    assert code == 3 and "NOT_FOUND" in err
    code, _, err = cli("run", f"--url={http_target.url()}", "--rps=-1", "--duration=1s")
    assert code == 2 and "INVALID_ARGUMENT" in err and "rps" in err
    code, _, err = cli("compare", baseline)
    assert code == 2 and "two" in err


def run_baseline(co: CoordinatorProcess, target: LoopbackServer) -> dict[str, Any]:
    """`perf run --output=json` as a process: one SMP document on stdout, progress on stderr."""
    run = perf(
        co,
        "run",
        f"--url={target.url('/delay/2')}",
        "--rps=200",
        "--connections=4",
        "--duration=2s",
        "--label=side=baseline",
        "--output=json",
    )
    document: dict[str, Any] = json.loads(ok(run))  # stdout is exactly one document
    assert "requests" in run.stderr and "req/s" in run.stderr  # progress went to stderr
    assert_smp_document_of_the_baseline(document)
    return document


def run_slower(cli: InProcess, target: LoopbackServer) -> dict[str, Any]:
    """A run against /delay/6, printed as YAML."""
    second: dict[str, Any] = yaml.safe_load(
        cli.ok("run", f"--url={target.url('/delay/6')}", "-n", "60", "-c", "2", "-o", "yaml")
    )
    assert set(second) >= SMP_RESULT_FIELDS
    assert second["latencies_ms"]["p50"] >= 6.0
    return second


def import_fortio_and_list_it(co: CoordinatorProcess, cli: InProcess) -> dict[str, Any]:
    """A fortio file imported into the coordinator's store is listed by the coordinator."""
    fortio: dict[str, Any] = json.loads(
        cli.ok(
            "import",
            str(FORTIO_HTTP),
            "--fortio",
            f"--data-dir={co.data_dir}",
            "--mesh=istio",
            "--mesh-version=1.30.3",
            "-o",
            "json",
        )
    )
    assert fortio["load_generator"] == "fortio"
    by_mesh = json.loads(cli.ok("results", "--mesh=istio", "-o", "json"))["results"]
    assert [d["id"] for d in by_mesh] == [fortio["id"]]
    assert by_mesh[0]["latencies_ms"] == fortio["latencies_ms"]
    return fortio


def assert_a_restart_keeps_every_result(
    co: CoordinatorProcess, cli: InProcess, ids: set[str], second: dict[str, Any]
) -> None:
    """A new coordinator process on the same data dir still has ``ids``, and ``second`` whole."""
    co.stop()
    co.start()
    assert json.loads(cli.ok("get", second["id"], "-o", "json")) == second
    after = json.loads(cli.ok("results", "-o", "json"))["results"]
    assert {d["id"] for d in after} == ids


def test_perf_cli_against_a_coordinator_process(
    coordinator_process: CoordinatorProcess,
    http_target: LoopbackServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    co = coordinator_process
    cli = InProcess(co, capsys, monkeypatch)
    document = run_baseline(co, http_target)
    baseline = document["id"]
    second = run_slower(cli, http_target)
    slower = second["id"]

    assert_results_are_listed_newest_first(cli, slower, baseline)
    # get returns the stored document, identical to what run printed
    assert json.loads(cli.ok("get", baseline, "-o", "json")) == document
    compared = assert_compare_is_relative_to_the_baseline(co, cli, document, second)
    assert_errors_say_what_is_wrong(cli, http_target, baseline)
    fortio = import_fortio_and_list_it(co, cli)

    assert_a_restart_keeps_every_result(co, cli, {baseline, slower, fortio["id"]}, second)
    assert cli.ok("compare", baseline, slower).splitlines() == compared


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_perf_cli_fails_runs_that_could_not_connect_and_names_why(
    coordinator_process: CoordinatorProcess,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cli = InProcess(coordinator_process, capsys, monkeypatch)
    url = f"http://127.0.0.1:{_closed_port()}/"
    code, out, err = cli("run", f"--url={url}", "--rps=50", "--duration=1s")
    assert code == 1
    assert "could not connect" in err and "connection refused: " in err
    assert "p50 -" in out and "0.000" not in out
    assert "no answer   connection refused: " in out
    # the operator may accept failures explicitly
    code, _, err = cli("run", f"--url={url}", "-n", "5", "--max-error-rate=100%")
    assert code == 0, err
    with pytest.raises(SystemExit) as usage:
        cli("run", f"--url={url}", "-n", "5", "--max-error-rate=150%")
    assert usage.value.code == 2 and "between 0 and 100%" in capsys.readouterr().err


def assert_four_panels_labelled(svg: str) -> None:
    """Histogram, percentile curve, latency and throughput over time: titled, axes labelled."""
    for text in (
        "latency histogram",
        "latency by percentile",
        "latency over time",
        "throughput over time",
        "latency (ms)",
        "percentile",
        "time (s)",
        "requests per second",
        "answered req/s",
        "mean",
        "max",
    ):
        assert f">{text}<" in svg, text
    assert svg.count('<g id="line2d_') >= 4 and svg.count('<g id="patch_') >= 5


def assert_a_real_png(path: Path) -> None:
    """A PNG of a plot's size with more than a few colours in it."""
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    from matplotlib import image

    pixels = image.imread(path)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 600
    assert len({tuple(row) for row in pixels.reshape(-1, pixels.shape[2])[::97]}) > 3


def test_perf_cli_plots_shows_histograms_and_takes_short_ids_and_names(
    coordinator_process: CoordinatorProcess,
    http_target: LoopbackServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    cli = InProcess(coordinator_process, capsys, monkeypatch)
    fast = json.loads(
        cli.ok(
            "run",
            f"--url={http_target.url('/delay/1')}",
            "--rps=100",
            "--duration=2500ms",
            "--name=fast",
            "-c",
            "2",
            "-o",
            "json",
        )
    )
    slow = json.loads(
        cli.ok(
            "run", f"--url={http_target.url('/delay/5')}", "-n", "40", "--name=slow", "-o", "json"
        )
    )
    # the timeline is stored with the result: second by second, adding up to the whole
    timeline = fast["timeline"]
    assert len(timeline) >= 2
    assert sum(point["requests"] for point in timeline) == fast["request_count"]
    assert all(point["mean_latency_ms"] >= 1.0 for point in timeline if point["requests"])

    shown = cli.ok("get", "fast", "--plot", str(tmp_path / "fast.svg"))
    assert f"result      {fast['id']}" in shown and "name        fast" in shown
    assert "latency histogram (ms)" in shown and "#" in shown
    assert_four_panels_labelled((tmp_path / "fast.svg").read_text())

    cli.ok("get", fast["id"][:8], "--plot", str(tmp_path / "fast.png"))
    assert_a_real_png(tmp_path / "fast.png")

    code, out, err = cli("compare", fast["id"][:8], "slow", "--plot", str(tmp_path / "cmp.svg"))
    assert code == 0, err
    assert out.splitlines()[0].split() == ["metric", "unit", fast["id"][:8], slow["id"][:8]]
    assert f"{fast['id'][:8]}  load: 100 req/s, 2.5s, 2 conn" in out
    assert f"{slow['id'][:8]}  load: max rate, 40 requests, 1 conn" in out
    assert "different loads" in err
    compared = (tmp_path / "cmp.svg").read_text()
    assert f">{fast['id'][:8]} fast (100 req/s, 2.5s, 2 conn)<" in compared
    assert f">{slow['id'][:8]} slow (max rate, 40 requests, 1 conn)<" in compared

    code, _, err = cli("compare", "", "slow")
    assert code == 2 and "matches 2 results" in err
    code, _, err = cli("get", "fast", "--plot", str(tmp_path / "fast.gif"))
    assert code == 2 and "end it in .svg, .png, .pdf" in err
