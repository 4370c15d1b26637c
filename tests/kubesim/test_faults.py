"""Fault injection: error rates by verb with 429/500/503, latency, dropped watch streams.

kubesim only: fault injection is kubesim's own."""

from __future__ import annotations

import http.client
import time
import urllib.parse

import pytest
from kubernetes import client

from kubesim.faults import Faults
from kubesim.harness import RunningSim
from tests.kubesim.support import raw_request, status_of


def test_admin_endpoint_configures_error_rates(
    kubesim: RunningSim, api_client: client.ApiClient
) -> None:
    core = client.CoreV1Api(api_client)
    code, body = raw_request(
        kubesim,
        "PUT",
        "/kubesim/faults",
        {"error_rate": {"create": 1.0}, "error_code": 429, "retry_after": 0},
    )
    assert code == 200 and body["error_rate"] == {"create": 1.0}
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    assert exc.value.status == 429
    assert exc.value.headers["Retry-After"] == "0"
    status = status_of(exc.value)
    assert status["reason"] == "TooManyRequests"
    assert status["details"]["retryAfterSeconds"] == 0
    assert raw_request(kubesim, "GET", "/kubesim/faults")[1]["injected"] == {"create": 1}
    assert core.list_namespaced_config_map("default").items == []  # reads unaffected
    raw_request(kubesim, "PUT", "/kubesim/faults", {"error_rate": {"*": 1.0}, "error_code": 500})
    with pytest.raises(client.ApiException) as exc:
        core.list_namespace()
    assert exc.value.status == 500
    code, _ = raw_request(kubesim, "DELETE", "/kubesim/faults")
    assert code == 200
    core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})


def test_partial_error_rates(kubesim: RunningSim, api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    raw_request(
        kubesim,
        "PUT",
        "/kubesim/faults",
        {"error_rate": {"get": 0.5}, "error_code": 500, "seed": 1},
    )
    failures = 0
    for _ in range(40):
        try:
            core.read_namespaced_config_map("c", "default")
        except client.ApiException as err:
            assert err.status == 500
            failures += 1
    assert 8 < failures < 32
    # 503 carries Retry-After: with client-go style retries on, reads get through a 50% rate
    api_client.configuration.client_go_retries = True
    raw_request(
        kubesim,
        "PUT",
        "/kubesim/faults",
        {"error_rate": {"get": 0.5}, "error_code": 503, "retry_after": 0, "seed": 2},
    )
    for _ in range(20):
        core.read_namespaced_config_map("c", "default")
    assert raw_request(kubesim, "GET", "/kubesim/faults")[1]["injected"]["get"] > 5


def test_latency(kubesim: RunningSim, api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    raw_request(kubesim, "PUT", "/kubesim/faults", {"latency_ms": {"list": 300}})
    start = time.monotonic()
    core.list_namespace()
    assert time.monotonic() - start >= 0.3
    faults = Faults.from_json('{"latency_ms": {"list": 300}}')
    assert (faults.latency("list"), faults.latency("get")) == (0.3, 0.0)


def test_watch_streams_are_dropped(kubesim: RunningSim) -> None:
    raw_request(kubesim, "PUT", "/kubesim/faults", {"drop_watch_after": 0.3})
    url = urllib.parse.urlsplit(kubesim.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    start = time.monotonic()
    conn.request("GET", "/api/v1/namespaces?watch=true&timeoutSeconds=30")
    resp = conn.getresponse()
    assert resp.status == 200
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        resp.read()
    assert time.monotonic() - start < 5
    conn.close()


def test_invalid_settings_are_refused(kubesim: RunningSim) -> None:
    code, status = raw_request(kubesim, "PUT", "/kubesim/faults", {"error_code": 404})
    assert code == 400 and status["reason"] == "BadRequest"
    code, status = raw_request(kubesim, "PUT", "/kubesim/faults", {"error_rate": {"jump": 1}})
    assert code == 400
    with pytest.raises(ValueError, match="unknown fault settings"):
        Faults.from_json('{"nope": 1}')
