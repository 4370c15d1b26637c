"""Watch: streaming, resuming by resourceVersion, expiry, bookmarks, timeouts, asyncio client."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
import urllib.request
from typing import Any

import pytest
import structlog
from kubernetes import client, config, watch
from kubernetes.aio import client as aio_client
from kubernetes.aio import config as aio_config
from kubernetes.aio import watch as aio_watch

from kubesim.harness import RunningSim, running_kubesim
from kubesim.server import SimConfig
from tests.kubesim.conftest import KUBESIM_ONLY
from tests.kubesim.servers import ApiServer
from tests.kubesim.support import eventually, get_json, ssl_context


def test_watch_streams_changes_live(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    seen: list[tuple[str, str]] = []
    ready = threading.Event()

    def consume() -> None:
        w = watch.Watch()
        ready.set()
        for event in w.stream(
            core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=5
        ):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                w.stop()

    thread = threading.Thread(target=consume)
    thread.start()
    ready.wait()
    core.create_namespaced_config_map(ns, {"metadata": {"name": "live"}})
    core.patch_namespaced_config_map("live", ns, {"data": {"a": "1"}})
    core.delete_namespaced_config_map("live", ns)
    thread.join(timeout=10)
    assert seen == [("ADDED", "live"), ("MODIFIED", "live"), ("DELETED", "live")]


ROOT_CA = "kube-root-ca.crt"  # the real server publishes it in every namespace; kubesim does not


def test_watch_resumes_from_resource_version(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "one"}})
    w = watch.Watch()
    events = list(w.stream(core.list_namespaced_config_map, ns, timeout_seconds=1))
    # no resourceVersion: the current state first, as ADDED events
    added = [e["object"].metadata.name for e in events if e["type"] == "ADDED"]
    assert [name for name in added if name != ROOT_CA] == ["one"]
    last = w.resource_version
    core.create_namespaced_config_map(ns, {"metadata": {"name": "two"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "three"}})
    replay = list(
        watch.Watch().stream(
            core.list_namespaced_config_map, ns, resource_version=last, timeout_seconds=1
        )
    )
    assert [(e["type"], e["object"].metadata.name) for e in replay] == [
        ("ADDED", "two"),
        ("ADDED", "three"),
    ]


def test_watch_filters_by_selectors_and_name(
    api: client.ApiClient, server: ApiServer, ns: str
) -> None:
    core = client.CoreV1Api(api)
    other = server.unique("other")
    core.create_namespace({"metadata": {"name": other}})
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, {"metadata": {"name": "a", "labels": {"x": "1"}}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "b"}})
    core.create_namespaced_config_map(other, {"metadata": {"name": "a", "labels": {"x": "1"}}})
    by_label = list(
        watch.Watch().stream(
            core.list_namespaced_config_map,
            ns,
            label_selector="x=1",
            resource_version=rv,
            timeout_seconds=1,
        )
    )
    assert [e["object"].metadata.name for e in by_label] == ["a"]
    by_field = list(
        watch.Watch().stream(
            core.list_config_map_for_all_namespaces,
            field_selector="metadata.name=a",
            resource_version=rv,
            timeout_seconds=1,
        )
    )
    assert [e["object"].metadata.namespace for e in by_field] == [ns, other]


def _raw_watch(sim: ApiServer | RunningSim, path: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(sim.url + path, timeout=10, context=ssl_context(sim)) as resp:
        return [json.loads(line) for line in resp.read().splitlines() if line]


def test_too_old_resource_version_is_an_expired_error_event() -> None:
    """kubesim only: it needs a short event history (kubesim's `history`); the real server's
    window is etcd's compaction interval (minutes)."""
    ns = "default"
    with (
        running_kubesim(SimConfig(ready_delay=0, history=5)) as sim,
        config.new_client_from_config(config_file=str(sim.kubeconfig)) as api,
    ):
        core = client.CoreV1Api(api)
        first = core.create_namespaced_config_map(ns, {"metadata": {"name": "c0"}})
        for i in range(1, 10):
            core.create_namespaced_config_map(ns, {"metadata": {"name": f"c{i}"}})
        old = first.metadata.resource_version
        events = _raw_watch(
            sim,
            f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={old}&timeoutSeconds=1",
        )
        assert len(events) == 1 and events[0]["type"] == "ERROR"
        status = events[0]["object"]
        assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
        # the client turns it into an ApiException with 410 once its one retry fails
        with pytest.raises(client.ApiException) as exc:
            list(
                watch.Watch().stream(
                    core.list_namespaced_config_map,
                    ns,
                    resource_version=old,
                    timeout_seconds=1,
                )
            )
        assert exc.value.status == 410


@KUBESIM_ONLY  # kubesim's bookmark interval; the real server's come about once a minute
def test_bookmarks_and_timeout(api: client.ApiClient, server: ApiServer, ns: str) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, {"metadata": {"name": "marked"}})
    events = _raw_watch(
        server,
        f"/api/v1/namespaces/{ns}/configmaps?watch=1"
        f"&allowWatchBookmarks=true&timeoutSeconds=1&resourceVersion={rv}",
    )
    assert [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"] == ["marked"]
    bookmark = events[-1]
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["kind"] == "ConfigMap"
    assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_initial_events_end_with_a_bookmark(server: ApiServer, ns: str) -> None:
    initial = _raw_watch(
        server,
        "/api/v1/namespaces?watch=1&sendInitialEvents=true"
        "&allowWatchBookmarks=true&timeoutSeconds=1"
        "&resourceVersionMatch=NotOlderThan",
    )
    names = [e["object"]["metadata"]["name"] for e in initial if e["type"] == "ADDED"]
    assert {ns, "default", "kube-system", "kube-public"} <= set(names)
    end = next(e for e in initial if e["type"] == "BOOKMARK")
    assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_asyncio_client_watch_and_crud(server: ApiServer, ns: str) -> None:
    async with await aio_config.new_client_from_config(config_file=str(server.kubeconfig)) as api:
        core = aio_client.CoreV1Api(api)
        listing = await core.list_namespace()
        assert {ns, "default"} <= {n.metadata.name for n in listing.items}
        rv = (await core.list_namespaced_config_map(ns)).metadata.resource_version
        await core.create_namespaced_config_map(ns, {"metadata": {"name": "aio"}})
        w = aio_watch.Watch()
        seen = []
        async for event in w.stream(
            core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=1
        ):
            seen.append((event["type"], event["object"].metadata.name))
        assert seen == [("ADDED", "aio")]
        w.stop()


def test_watch_of_a_single_object_with_field_selector(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    from tests.kubesim.support import deployment

    apps.create_namespaced_deployment(ns, deployment("solo", replicas=1))
    apps.create_namespaced_deployment(ns, deployment("other", replicas=1))

    def ready() -> bool:
        for event in watch.Watch().stream(
            apps.list_namespaced_deployment,
            ns,
            field_selector="metadata.name=solo",
            timeout_seconds=1,
        ):
            obj = event["object"]
            assert obj.metadata.name == "solo"
            if (obj.status.available_replicas or 0) >= 1:
                return True
        return False

    eventually(ready)


def _leave_a_watch(sim: RunningSim, query: str) -> None:
    """Open a watch of the namespaces, read its first event, and close the connection, as a
    client that has seen what it waited for does."""
    url = urllib.parse.urlsplit(sim.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        connection.request("GET", f"/api/v1/namespaces?watch=1&{query}")
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.readline())["type"] == "ADDED"
    finally:
        connection.close()


@pytest.mark.parametrize(
    "query",
    [
        "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
        "resourceVersion=0",
    ],
    ids=["initial-events-and-bookmarks", "no-bookmarks"],
)
def test_a_watch_ends_quietly_when_its_client_leaves(kubesim: RunningSim, query: str) -> None:
    """kubesim only (its stats and its log). A watch whose client closed the connection is closed
    within a second: it used to end in an internal error logged at its next bookmark (which
    stalled the server, see test_kubectl_wait), or, with no bookmarks, to stay open until its
    timeout (30 minutes by default)."""
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            _leave_a_watch(kubesim, query)
        eventually(lambda: get_json(kubesim, "/kubesim/stats")["watchers"] == 0)
        assert get_json(kubesim, "/api/v1/namespaces/default")["metadata"]["name"] == "default"
    assert [entry for entry in logs if entry["log_level"] in ("error", "warning")] == []
