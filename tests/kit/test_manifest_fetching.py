"""Sample-app and add-on manifests: fetched once, cached, served offline, loaded safely."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.kit.model.yaml_documents import ManifestError
from adapters.kit.plan.manifest_fetching import (
    ManifestFetcher,
    ManifestFetchError,
    ManifestUnavailable,
)
from tests.fixtures_paths import OWN_FIXTURES, shared_fixtures
from tests.plugins.static_http import StaticHttpServer

ServerFactory = Callable[[Path], StaticHttpServer]
OWN_MANIFESTS = OWN_FIXTURES / "kit" / "manifests"


def source(url: str, cache: Path, **kwargs: int) -> ManifestFetcher:
    return ManifestFetcher(url, cache, timeout=5.0, retry_wait=0.01, **kwargs)


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    """A private copy of our own manifests, so tests may change or delete them."""
    return Path(shutil.copytree(OWN_MANIFESTS, tmp_path / "manifests"))


async def test_fetch_load_cache_and_offline(
    manifests: Path, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    server = static_http_server(manifests)
    cache = tmp_path / "cache"
    echo = source(server.url, cache)
    objects = await echo.load("echo.yaml")
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("ServiceAccount", "echo"),
        ("Service", "echo"),
        ("Deployment", "echo"),
    ]
    assert server.requests("/echo.yaml") == 1
    # Cached: a second load, even by a new source object, makes no request.
    assert await source(server.url, cache).load("echo.yaml") == objects
    assert server.requests("/echo.yaml") == 1
    server.stop()
    assert await source(server.url, cache, attempts=2).load("echo.yaml") == objects


async def test_refresh_asks_the_source_and_falls_back_to_the_cache(
    manifests: Path, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    server = static_http_server(manifests)
    cache = tmp_path / "cache"
    echo = source(server.url, cache, attempts=2)
    first = await echo.text("echo.yaml")
    (manifests / "echo.yaml").write_text(first.replace("echo:1.0", "echo:2.0"))
    assert await echo.text("echo.yaml") == first  # pinned URL: cache first
    assert "echo:2.0" in await echo.text("echo.yaml", refresh=True)
    assert "echo:2.0" in await echo.text("echo.yaml")  # the cache now holds the new copy
    server.stop()
    assert "echo:2.0" in await echo.text("echo.yaml", refresh=True)


async def test_offline_without_cache_and_missing_files(
    manifests: Path, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    server = static_http_server(manifests)
    echo = source(server.url, tmp_path / "cache")
    with pytest.raises(ManifestFetchError, match="HTTP 404") as caught:
        await echo.load("missing.yaml")
    assert not isinstance(caught.value, ManifestUnavailable)
    server.stop()
    with pytest.raises(ManifestUnavailable, match="not cached"):
        await source(server.url, tmp_path / "cache", attempts=2).load("echo.yaml")


async def test_corrupt_cache_is_refetched(
    manifests: Path, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    server = static_http_server(manifests)
    cache = tmp_path / "cache"
    echo = source(server.url, cache)
    await echo.text("echo.yaml")
    (stored,) = cache.glob("*.yaml")
    stored.write_text("tampered")
    assert "kind: ServiceAccount" in await echo.text("echo.yaml")
    assert server.requests("/echo.yaml") == 2


async def test_yaml_bomb_and_oversized_manifests_are_refused(
    manifests: Path, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    server = static_http_server(manifests)
    with pytest.raises(ManifestError, match="max_alias_expansions"):
        await source(server.url, tmp_path / "cache").load("lol.yaml")
    with pytest.raises(ManifestFetchError, match="larger than the limit of 100 bytes"):
        await source(server.url, tmp_path / "small-cache", max_bytes=100).load("echo.yaml")


@pytest.mark.parametrize(
    "name", ["", "../secrets.yaml", "/etc/passwd", "a/../../b.yaml", "http://elsewhere/x.yaml"]
)
def test_names_must_stay_under_the_base(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be a relative path"):
        source("http://127.0.0.1:1/", tmp_path).url_of(name)


def test_names_resolve_under_the_base(tmp_path: Path) -> None:
    base = source("https://raw.example/istio/1.30.3/samples", tmp_path)
    assert base.url_of("bookinfo.yaml") == "https://raw.example/istio/1.30.3/samples/bookinfo.yaml"
    assert base.url_of("addons/kiali.yaml") == (
        "https://raw.example/istio/1.30.3/samples/addons/kiali.yaml"
    )


@pytest.mark.parametrize("as_uri", [False, True], ids=["directory", "file-url"])
async def test_mirror_directory(manifests: Path, tmp_path: Path, as_uri: bool) -> None:
    location = manifests.as_uri() if as_uri else str(manifests)
    mirror = source(location, tmp_path / "cache")
    assert len(await mirror.load("echo.yaml")) == 3
    shutil.rmtree(manifests)
    assert len(await source(location, tmp_path / "cache").load("echo.yaml")) == 3


@pytest.mark.parametrize(
    ("folder", "name", "count"),
    [
        ("apps", "bookinfo.yaml", 14),
        ("apps", "httpbin.yaml", 3),
        ("apps", "emojivoto.yaml", 11),
        ("apps", "booksapp.yaml", 11),
        ("apps", "bookinfo-virtual-service-all-v1.yaml", 4),
        ("apps", "bookinfo-destination-rule-all.yaml", 4),
    ],
)
async def test_real_sample_apps_over_http(
    folder: str, name: str, count: int, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    server = static_http_server(shared_fixtures() / folder)
    objects = await source(server.url, tmp_path / "cache").load(name)
    assert len(objects) == count
    assert server.requests(f"/{name}") == 1


async def test_real_addons_and_consul_workloads(
    tmp_path: Path, static_http_server: ServerFactory
) -> None:
    fixtures = shared_fixtures()
    addons = static_http_server(fixtures / "addons")
    apps = static_http_server(fixtures / "apps")
    cache = tmp_path / "cache"  # one cache shared by both sources
    for addon in ("prometheus", "grafana", "kiali", "jaeger"):
        objects = await source(addons.url, cache).load(f"{addon}.yaml")
        assert any(o["kind"] == "Deployment" for o in objects), addon
    objects = await source(apps.url, cache).load("static-server.yaml")
    assert [o["kind"] for o in objects].count("Deployment") == 1
    client = source(apps.url, cache)
    if "80---" in await client.text("static-client.yaml"):
        # The shared copy joins two files without a newline ("port: 80---"), so the next
        # object's keys land in the Service: kubectl refuses it too, and so do we, clearly.
        with pytest.raises(
            ManifestError, match=r"document \d+: duplicate key 'apiVersion' at line"
        ):
            await client.load("static-client.yaml")
    else:
        assert [o["kind"] for o in await client.load("static-client.yaml")].count("Deployment")
