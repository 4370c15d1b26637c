"""Chart repository client against real servers: our toy repo and the real upstream repos."""

from __future__ import annotations

import hashlib
import itertools
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from adapters.kit.plan.chart_repository import (
    ChartDigestMismatch,
    ChartRepository,
    ChartRepositoryError,
    ChartRepositoryUnavailable,
    ChartVersionNotFound,
    RepositoryIndex,
    SemVer,
)
from adapters.kit.plan.manifest_fetching import ManifestFetcher
from adapters.kit.plan.rendering import render_chart
from tests.fixtures_paths import OWN_FIXTURES, shared_fixtures
from tests.plugins.static_http import StaticHttpServer

ServerFactory = Callable[[Path], StaticHttpServer]
TOY_CHART = OWN_FIXTURES / "kit" / "toychart"
TOY_VERSIONS = ("0.1.0", "0.2.0", "0.10.0", "0.11.0-rc.1")


def write_index(repo: Path, entries: dict[str, list[dict[str, Any]]]) -> None:
    document = {"apiVersion": "v1", "entries": entries, "generated": "2026-01-01T00:00:00Z"}
    (repo / "index.yaml").write_text(yaml.safe_dump(document))


def package_toy_repo(repo: Path, versions: tuple[str, ...] = TOY_VERSIONS) -> dict[str, str]:
    """Package the toy chart at each version under repo/charts/; return version → digest."""
    archives = repo / "charts"
    archives.mkdir(parents=True, exist_ok=True)
    digests: dict[str, str] = {}
    entries = []
    for version in versions:
        archive = Path(helm_python.package(TOY_CHART, destination=archives, version=version))
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        assert helm_python.digest(archive).removeprefix("sha256:") == digest
        digests[version] = digest
        entries.append(
            {
                "apiVersion": "v2",
                "name": "toychart",
                "version": version,
                "appVersion": "1.0.0",
                "digest": digest,
                "created": "2026-01-01T00:00:00Z",
                "urls": [f"charts/{archive.name}"],
            }
        )
    write_index(repo, {"toychart": entries})
    return digests


@pytest.fixture
def toy_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    package_toy_repo(repo)
    return repo


def client(url: str, cache: Path, **kwargs: Any) -> ChartRepository:
    return ChartRepository(url, cache, timeout=5.0, retry_wait=0.01, **kwargs)


async def test_index_lists_versions_in_semver_order(
    toy_repo: Path, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    server = static_http_server(toy_repo)
    repo = client(server.url, tmp_path / "cache")
    index = await repo.index()
    assert list(index.charts) == ["toychart"]
    # Semver, not string order: 0.10.0 > 0.2.0; the prerelease comes after every release.
    assert index.versions("toychart") == ["0.10.0", "0.2.0", "0.1.0", "0.11.0-rc.1"]
    entry = index.resolve("toychart", "0.2.0")
    assert entry.app_version == "1.0.0"
    assert entry.urls == ("charts/toychart-0.2.0.tgz",)
    assert entry.created == "2026-01-01T00:00:00Z"
    assert not entry.deprecated
    assert await repo.versions("toychart") == index.versions("toychart")
    assert server.requests("/index.yaml") == 1  # the index is fetched once per client


async def test_resolve_newest_stable_exact_and_unknown(
    toy_repo: Path, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    server = static_http_server(toy_repo)
    repo = client(server.url, tmp_path / "cache")
    assert (await repo.resolve("toychart", None)).version == "0.10.0"
    assert (await repo.resolve("toychart", "0.11.0-rc.1")).version == "0.11.0-rc.1"
    assert (await repo.resolve("toychart", "v0.2.0")).version == "0.2.0"
    with pytest.raises(ChartVersionNotFound) as caught:
        await repo.resolve("toychart", "9.9.9")
    assert "0.10.0, 0.2.0, 0.1.0, 0.11.0-rc.1" in str(caught.value)
    with pytest.raises(ChartVersionNotFound, match="charts available: toychart"):
        await repo.resolve("istiod", None)


def test_newest_stable_skips_deprecated_and_needs_a_release() -> None:
    def entry(version: str, **extra: Any) -> dict[str, Any]:
        return {"name": "c", "version": version, "digest": "0" * 64, "urls": ["c.tgz"], **extra}

    text = yaml.safe_dump(
        {"apiVersion": "v1", "entries": {"c": [entry("1.0.0"), entry("2.0.0", deprecated=True)]}}
    )
    assert RepositoryIndex.parse(text).resolve("c").version == "1.0.0"
    only_pre = yaml.safe_dump({"apiVersion": "v1", "entries": {"c": [entry("1.0.0-rc.1")]}})
    with pytest.raises(ChartVersionNotFound, match=r"no stable version; available: 1.0.0-rc.1"):
        RepositoryIndex.parse(only_pre).resolve("c")


def test_semver_precedence_follows_the_spec() -> None:
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.2.0",
        "1.10.0",
    ]
    parsed = [SemVer.parse(v) for v in chain]
    assert all(p is not None for p in parsed)
    for lower, higher in itertools.pairwise(parsed):
        assert lower is not None and higher is not None
        assert lower < higher
    assert SemVer.parse("1.0.0+build.5") == SemVer.parse("1.0.0")
    assert SemVer.parse("latest") is None
    assert SemVer.parse("1.02.0") is None


async def test_fetch_verifies_caches_and_works_offline(
    toy_repo: Path, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    server = static_http_server(toy_repo)
    cache = tmp_path / "cache"
    repo = client(server.url, cache)
    chart = await repo.resolve("toychart", None)
    path = await repo.fetch(chart)
    assert path == cache / f"{chart.digest}.tgz"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == chart.digest
    archive_path = "/charts/toychart-0.10.0.tgz"
    assert server.requests(archive_path) == 1

    # A second fetch, even from a fresh client, is served from the cache.
    again = client(server.url, cache)
    assert await again.fetch(await again.resolve("toychart", None)) == path
    assert server.requests(archive_path) == 1

    # Offline: the index and the archive both come from the cache.
    server.stop()
    offline = client(server.url, cache, attempts=2)
    assert await offline.versions("toychart") == ["0.10.0", "0.2.0", "0.1.0", "0.11.0-rc.1"]
    assert await offline.fetch(await offline.resolve("toychart", None)) == path
    # ... but a version never downloaded cannot be had.
    with pytest.raises(ChartRepositoryUnavailable, match="not cached"):
        await offline.fetch(await offline.resolve("toychart", "0.1.0"))


async def test_offline_without_cache_is_a_clear_error(
    toy_repo: Path, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    server = static_http_server(toy_repo)
    server.stop()
    repo = client(server.url, tmp_path / "cache", attempts=2)
    with pytest.raises(ChartRepositoryUnavailable, match="no cached index"):
        await repo.index()


async def test_tampered_archive_is_refused_naming_both_digests(
    toy_repo: Path, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    archive = toy_repo / "charts" / "toychart-0.2.0.tgz"
    archive.write_bytes(archive.read_bytes() + b"tampered")
    actual = hashlib.sha256(archive.read_bytes()).hexdigest()
    server = static_http_server(toy_repo)
    cache = tmp_path / "cache"
    repo = client(server.url, cache)
    chart = await repo.resolve("toychart", "0.2.0")
    with pytest.raises(ChartDigestMismatch) as caught:
        await repo.fetch(chart)
    assert actual in str(caught.value)
    assert chart.digest in str(caught.value)
    assert not (cache / f"{chart.digest}.tgz").exists()


async def test_corrupt_cache_entry_is_replaced(
    toy_repo: Path, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    server = static_http_server(toy_repo)
    cache = tmp_path / "cache"
    repo = client(server.url, cache)
    chart = await repo.resolve("toychart", "0.1.0")
    path = await repo.fetch(chart)
    path.write_bytes(b"garbage")
    assert await repo.fetch(chart) == path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == chart.digest
    assert server.requests("/charts/toychart-0.1.0.tgz") == 2


async def test_index_is_refreshed_when_reachable(
    toy_repo: Path, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    server = static_http_server(toy_repo)
    cache = tmp_path / "cache"
    repo = client(server.url, cache)
    assert (await repo.resolve("toychart", None)).version == "0.10.0"
    package_toy_repo(toy_repo, (*TOY_VERSIONS, "0.12.0"))
    assert (await repo.resolve("toychart", None)).version == "0.10.0"  # memoised per client
    refreshed = await repo.index(refresh=True)
    assert refreshed.resolve("toychart").version == "0.12.0"
    assert (await client(server.url, cache).resolve("toychart", None)).version == "0.12.0"


async def test_transient_errors_are_retried_a_bounded_number_of_times(
    toy_repo: Path, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    server = static_http_server(toy_repo)
    server.fail_next(2, status=503)
    repo = client(server.url, tmp_path / "cache", attempts=3)
    assert await repo.versions("toychart")
    assert server.requests("/index.yaml") == 3

    server.fail_next(5, status=502)
    stubborn = client(server.url, tmp_path / "other-cache", attempts=2)
    with pytest.raises(ChartRepositoryUnavailable, match="after 2 attempts"):
        await stubborn.index()
    assert server.requests("/index.yaml") == 5


async def test_missing_archive_is_not_retried(
    toy_repo: Path, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    (toy_repo / "charts" / "toychart-0.1.0.tgz").unlink()
    server = static_http_server(toy_repo)
    repo = client(server.url, tmp_path / "cache")
    with pytest.raises(ChartRepositoryError, match="HTTP 404"):
        await repo.fetch(await repo.resolve("toychart", "0.1.0"))
    assert server.requests("/charts/toychart-0.1.0.tgz") == 1


async def test_entry_without_digest_is_refused(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    repo_dir.mkdir()
    write_index(repo_dir, {"c": [{"name": "c", "version": "1.0.0", "urls": ["c-1.0.0.tgz"]}]})
    repo = client(str(repo_dir), tmp_path / "cache")
    with pytest.raises(ChartRepositoryError, match="no sha256 digest"):
        await repo.fetch(await repo.resolve("c", None))


@pytest.mark.parametrize("as_uri", [False, True], ids=["directory", "file-url"])
async def test_local_repositories_for_air_gapped_mirrors(
    toy_repo: Path, tmp_path: Path, as_uri: bool
) -> None:
    location = toy_repo.as_uri() if as_uri else str(toy_repo)
    repo = client(location, tmp_path / "cache")
    chart = await repo.resolve("toychart", None)
    path = await repo.fetch(chart)
    assert path.read_bytes() == (toy_repo / "charts" / "toychart-0.10.0.tgz").read_bytes()
    # The mirror may disappear afterwards (a removed USB stick): the cache still serves.
    shutil.rmtree(toy_repo)
    gone = client(location, tmp_path / "cache")
    assert await gone.fetch(await gone.resolve("toychart", None)) == path


@pytest.mark.parametrize(
    ("repo_name", "chart", "newest", "all_versions"),
    [
        ("istio", "base", "1.30.3", ["1.30.3", "1.29.6"]),
        ("istio", "istiod", "1.30.3", ["1.30.3", "1.29.6"]),
        ("istio", "gateway", "1.30.3", ["1.30.3", "1.29.6"]),
        ("linkerd", "linkerd-crds", "2026.8.3", ["2026.8.3", "2026.7.2"]),
        ("linkerd", "linkerd-control-plane", "2026.8.3", ["2026.8.3", "2026.7.2"]),
        ("hashicorp", "consul", "1.9.11", ["1.9.11", "1.8.16"]),
    ],
)
async def test_real_repositories(
    repo_name: str,
    chart: str,
    newest: str,
    all_versions: list[str],
    tmp_path: Path,
    static_http_server: ServerFactory,
) -> None:
    directory = shared_fixtures() / "charts" / repo_name
    server = static_http_server(directory)
    repo = client(server.url, tmp_path / "cache")
    assert await repo.versions(chart) == all_versions
    resolved = await repo.resolve(chart, None)
    assert resolved.version == newest
    with pytest.raises(ChartVersionNotFound) as caught:
        await repo.resolve(chart, "0.0.1")
    assert ", ".join(all_versions) in str(caught.value)
    oldest = await repo.resolve(chart, all_versions[-1])
    path = await repo.fetch(oldest)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == oldest.digest
    with helm_python.Chart.load(path) as loaded:
        assert loaded.version == all_versions[-1]


async def test_shared_fixtures_work_as_an_air_gapped_mirror(tmp_path: Path) -> None:
    """A `--mirror DIR` laid out like the shared fixtures: charts/<mesh>/ plus apps/, addons/."""
    mirror = shared_fixtures()
    repo = client(str(mirror / "charts" / "istio"), tmp_path / "cache")
    base = await repo.resolve("base", None)
    release = await render_chart(await repo.fetch(base), release_name="b", namespace="istio-system")
    assert len(release.objects) == 17
    manifests = ManifestFetcher(str(mirror), tmp_path / "cache")
    assert len(await manifests.load("apps/bookinfo.yaml")) == 14
