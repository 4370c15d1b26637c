"""`/kubesim/stats`: answered API requests by verb, so benchmarks can compare clients' traffic.

kubesim only: the endpoint is kubesim's own."""

from __future__ import annotations

from kubernetes import client

from kubesim.harness import RunningSim
from tests.kubesim.support import raw_request


def test_stats_count_requests_by_verb(kubesim: RunningSim, api_client: client.ApiClient) -> None:
    before = raw_request(kubesim, "GET", "/kubesim/stats")[1]["requests"]
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="counted"))
    )
    core.read_namespaced_config_map("counted", "default")
    core.list_namespaced_config_map("default")
    core.list_namespace()
    for path in ("/api", "/api/v1", "/apis", "/apis/apps/v1", "/version", "/openapi/v3"):
        assert raw_request(kubesim, "GET", path)[0] == 200

    after = raw_request(kubesim, "GET", "/kubesim/stats")[1]["requests"]
    delta = {verb: after.get(verb, 0) - before.get(verb, 0) for verb in after}
    assert {verb: n for verb, n in delta.items() if n} == {
        "create": 1,
        "get": 1,
        "list": 2,
        "discovery": 6,
    }
