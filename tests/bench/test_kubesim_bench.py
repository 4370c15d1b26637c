"""kubesim throughput through the Python client: creates/s, server-side applies/s, watch fan-out.

The server runs as its own process pinned to one core (the client gets the other, when there
is one). Two rates are printed for each operation: wall clock (client and server together,
so it depends on the client's threads and on whatever else the machine runs) and per second
of server CPU (the server's capacity on one core, which a busy machine does not skew). The
target, >= 500 server-side applies/s, is checked on the second. Run with `make bench`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client, config, watch

from kubesim.harness import SimProcess, kubesim_process

pytestmark = pytest.mark.bench

CREATES = 1000
APPLIES = 1000
WATCHERS = 20
WATCH_EVENTS = 300
APPLY = "application/apply-patch+yaml"
THREADS = 4


@dataclass(frozen=True, kw_only=True)
class Rates:
    wall: float
    server_cpu: float


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    cores = sorted(os.sched_getaffinity(0))
    with kubesim_process(tmp_path_factory.mktemp("bench")) as sim:
        os.sched_setaffinity(sim.pid, {cores[0]})
        if len(cores) > 1:
            os.sched_setaffinity(0, set(cores[1:]))
        try:
            yield sim
        finally:
            os.sched_setaffinity(0, set(cores))


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def _timed(server: SimProcess, count: int, threads: int, work: Callable[[int], None]) -> Rates:
    """Run work(0..count-1) on `threads` client threads; operations per second of wall clock
    and per second of server CPU."""
    cpu = server.cpu_seconds()
    start = time.perf_counter()
    if threads == 1:
        for i in range(count):
            work(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(count)))
    wall = time.perf_counter() - start
    return Rates(wall=_rate(count, wall), server_cpu=_rate(count, server.cpu_seconds() - cpu))


def creator(core: client.CoreV1Api, prefix: str) -> Callable[[int], None]:
    """Work item i creates ConfigMap ``prefix-i``."""

    def work(i: int) -> None:
        body = {
            "metadata": {"name": f"{prefix}-{i}", "labels": {"app": "bench"}},
            "data": {"k": "v" * 64},
        }
        core.create_namespaced_config_map("bench", body, _preload_content=False).read()

    return work


def server_side_applier(
    patch: Callable[..., Any], prefix: str, body: Callable[[str], dict[str, Any]]
) -> Callable[[int], None]:
    """Work item i server-side applies ``body(name)`` as ``prefix-i`` through ``patch``."""

    def work(i: int) -> None:
        name = f"{prefix}-{i}"
        patch(
            name,
            "bench",
            body(name),
            field_manager="bench",
            _content_type=APPLY,
            _preload_content=False,
        ).read()

    return work


def config_map_holding(value: str) -> Callable[[str], dict[str, Any]]:
    def body(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"app": "bench", "v": value}},
            "data": {"k": value * 16, "other": "x"},
        }

    return body


def idle_deployment(name: str) -> dict[str, Any]:
    """A Deployment of no replicas."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "c", "image": "i:1", "ports": [{"containerPort": 80}]}]
                },
            },
        },
    }


def applier(core: client.CoreV1Api, prefix: str, value: str) -> Callable[[int], None]:
    """Work item i server-side applies ConfigMap ``prefix-i`` holding ``value``."""
    return server_side_applier(core.patch_namespaced_config_map, prefix, config_map_holding(value))


def measure_rates(server: SimProcess, api: client.ApiClient) -> dict[str, Rates]:
    """Creates, then applies that create, update and change nothing, on 1 and THREADS threads;
    then Deployment applies."""
    results: dict[str, Rates] = {}
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "bench"}})
    for threads in (1, THREADS):
        tag = f"{threads}t"
        results[f"creates/s {tag}"] = _timed(server, CREATES, threads, creator(core, f"c{tag}"))
        results[f"applies/s create {tag}"] = _timed(
            server, APPLIES, threads, applier(core, f"a{tag}", "one")
        )
        results[f"applies/s update {tag}"] = _timed(
            server, APPLIES, threads, applier(core, f"a{tag}", "two")
        )
        results[f"applies/s no-op {tag}"] = _timed(
            server, APPLIES, threads, applier(core, f"a{tag}", "two")
        )
    deployments = server_side_applier(
        client.AppsV1Api(api).patch_namespaced_deployment, "d", idle_deployment
    )
    results[f"deployment applies/s {THREADS}t"] = _timed(server, 300, THREADS, deployments)
    return results


def print_rates(results: dict[str, Rates]) -> None:
    print(f"\nkubesim bench (server pinned to one core; Python client, 1 and {THREADS} threads)")
    print(f"  {'operation':<28} {'wall /s':>9} {'per server CPU s':>17}")
    for key, rates in results.items():
        print(f"  {key:<28} {rates.wall:9.0f} {rates.server_cpu:17.0f}")


def test_creates_and_applies_per_second(server: SimProcess) -> None:
    with config.new_client_from_config(config_file=str(server.kubeconfig)) as api:
        results = measure_rates(server, api)
    print_rates(results)
    capacity = min(
        results[f"applies/s {k} {t}t"].server_cpu
        for k in ("create", "update", "no-op")
        for t in (1, THREADS)
    )
    assert capacity >= 500, f"target is >= 500 server-side applies/s, measured {capacity:.0f}"


def test_watch_fan_out_to_20_watchers(server: SimProcess) -> None:
    with config.new_client_from_config(config_file=str(server.kubeconfig)) as api:
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "fanout"}})
        rv = core.list_namespaced_config_map("fanout").metadata.resource_version
        received = [0] * WATCHERS
        done = threading.Barrier(WATCHERS + 1)

        def consume(index: int) -> None:
            with config.new_client_from_config(config_file=str(server.kubeconfig)) as own:
                own_core = client.CoreV1Api(own)
                w = watch.Watch()
                for _ in w.stream(
                    own_core.list_namespaced_config_map,
                    "fanout",
                    resource_version=rv,
                    timeout_seconds=60,
                ):
                    received[index] += 1
                    if received[index] == WATCH_EVENTS:
                        w.stop()
            done.wait(timeout=120)

        threads = [threading.Thread(target=consume, args=(i,)) for i in range(WATCHERS)]
        for thread in threads:
            thread.start()
        cpu = server.cpu_seconds()
        start = time.perf_counter()
        for i in range(WATCH_EVENTS):
            core.create_namespaced_config_map(
                "fanout", {"metadata": {"name": f"w-{i}"}}, _preload_content=False
            ).read()
        done.wait(timeout=120)
        elapsed = time.perf_counter() - start
        server_cpu = server.cpu_seconds() - cpu
        for thread in threads:
            thread.join(timeout=10)
    delivered = WATCHERS * WATCH_EVENTS
    print(
        f"\nkubesim watch fan-out: {WATCHERS} watchers x {WATCH_EVENTS} events in "
        f"{elapsed:.2f}s = {delivered / elapsed:.0f} events/s delivered "
        f"({_rate(delivered, server_cpu):.0f} per server CPU second)"
    )
    assert received == [WATCH_EVENTS] * WATCHERS
