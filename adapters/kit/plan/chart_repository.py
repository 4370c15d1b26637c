"""A Helm chart repository client: index, version resolution, verified and cached downloads.

The repository (http(s)://, file:// or a plain directory, e.g. an air-gapped mirror) publishes
an `index.yaml` listing every chart version with the sha256 digest of its archive. Archives are
cached by that digest, so a cached file is trusted exactly as far as the index is; the index is
cached too, so versions can be listed and charts fetched while the repository is unreachable.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import total_ordering
from pathlib import Path
from typing import Any

import structlog

from adapters.kit.model.yaml_documents import ManifestError, load_mapping
from adapters.kit.plan.downloading import (
    DownloadError,
    DownloadPolicy,
    SourceUnavailable,
    as_base_url,
    download,
    join_url,
    write_atomically,
)

__all__ = [
    "ChartDigestMismatch",
    "ChartRepository",
    "ChartRepositoryError",
    "ChartRepositoryUnavailable",
    "ChartVersion",
    "ChartVersionNotFound",
    "RepositoryIndex",
    "SemVer",
]

log = structlog.get_logger(__name__)

MAX_INDEX_BYTES = 64 * 1024 * 1024
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024


class ChartRepositoryError(RuntimeError):
    """Something about a chart repository is wrong; the message says what and where."""


class ChartRepositoryUnavailable(ChartRepositoryError):
    """The repository cannot be reached and nothing usable is cached."""


class ChartVersionNotFound(ChartRepositoryError):
    """The requested chart or version is not in the index; the message lists what is."""


class ChartDigestMismatch(ChartRepositoryError):
    """A downloaded archive's sha256 is not the one the index promises."""


_SEMVER = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


@total_ordering
@dataclass(frozen=True, kw_only=True, eq=False)
class SemVer:
    """A semantic version with SemVer 2.0 precedence (prerelease < release, build ignored)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> SemVer | None:
        """Parse ``1.2.3``, ``v1.2.3-rc.1+build``; None when ``text`` is not semver."""
        match = _SEMVER.match(text.strip())
        if match is None:
            return None
        pre = match.group("pre")
        return cls(
            major=int(match.group("major")),
            minor=int(match.group("minor")),
            patch=int(match.group("patch")),
            prerelease=tuple(pre.split(".")) if pre else (),
        )

    @property
    def is_stable(self) -> bool:
        """A release, not a prerelease."""
        return not self.prerelease

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # Numeric identifiers sort below alphanumeric ones and numerically among themselves.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SemVer) and self._key() == other._key()

    def __lt__(self, other: SemVer) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True, kw_only=True)
class ChartVersion:
    """One entry of a repository index."""

    name: str
    version: str
    app_version: str
    digest: str
    urls: tuple[str, ...]
    created: str
    deprecated: bool

    @property
    def semver(self) -> SemVer | None:
        """The parsed version, None when it is not semver."""
        return SemVer.parse(self.version)


def _sorted_newest_first(entries: list[ChartVersion]) -> list[ChartVersion]:
    semver = [e for e in entries if e.semver is not None]
    other = [e for e in entries if e.semver is None]
    stable = sorted((e for e in semver if e.semver and e.semver.is_stable), key=_semver_of)
    pre = sorted((e for e in semver if e.semver and not e.semver.is_stable), key=_semver_of)
    return stable[::-1] + pre[::-1] + other


def _semver_of(entry: ChartVersion) -> SemVer:
    parsed = entry.semver
    assert parsed is not None  # filtered by the caller
    return parsed


@dataclass(frozen=True, kw_only=True)
class RepositoryIndex:
    """A parsed ``index.yaml``: chart name → versions, newest first."""

    charts: Mapping[str, tuple[ChartVersion, ...]]
    generated: str

    @classmethod
    def parse(cls, text: str, *, source: str = "index.yaml") -> RepositoryIndex:
        """Parse index.yaml text; entries without a name or version are refused."""
        try:
            raw = load_mapping(text, max_bytes=MAX_INDEX_BYTES, source=source)
        except ManifestError as exc:
            raise ChartRepositoryError(f"repository index {source} is unreadable: {exc}") from exc
        entries = raw.get("entries")
        if not isinstance(entries, dict):
            raise ChartRepositoryError(f"repository index {source} has no `entries` mapping")
        charts: dict[str, tuple[ChartVersion, ...]] = {}
        for chart, versions in entries.items():
            if not isinstance(versions, list):
                raise ChartRepositoryError(f"{source}: entries.{chart} is not a list")
            parsed = [_chart_version(chart, item, source) for item in versions]
            charts[chart] = tuple(_sorted_newest_first(parsed))
        return cls(charts=charts, generated=str(raw.get("generated", "")))

    def versions(self, chart: str) -> list[str]:
        """Versions of ``chart``, newest first, stable before prerelease (semver order)."""
        return [entry.version for entry in self._entries(chart)]

    def resolve(self, chart: str, version: str | None = None) -> ChartVersion:
        """An exact version, or the newest stable (non-deprecated) one when ``version`` is None."""
        entries = self._entries(chart)
        if version is None:
            for entry in entries:
                parsed = entry.semver
                if parsed is not None and parsed.is_stable and not entry.deprecated:
                    return entry
            raise ChartVersionNotFound(
                f"chart {chart!r} has no stable version; available: {self._listing(chart)}; "
                "ask for one explicitly"
            )
        wanted = SemVer.parse(version)
        for entry in entries:
            if entry.version == version or (wanted is not None and entry.semver == wanted):
                return entry
        raise ChartVersionNotFound(
            f"chart {chart!r} has no version {version!r}; available: {self._listing(chart)}"
        )

    def _entries(self, chart: str) -> tuple[ChartVersion, ...]:
        try:
            return self.charts[chart]
        except KeyError:
            known = ", ".join(sorted(self.charts)) or "none"
            raise ChartVersionNotFound(
                f"chart {chart!r} is not in the repository; charts available: {known}"
            ) from None

    def _listing(self, chart: str) -> str:
        return ", ".join(self.versions(chart)) or "none"


def _chart_version(chart: str, item: Any, source: str) -> ChartVersion:
    if not isinstance(item, dict):
        raise ChartRepositoryError(f"{source}: an entry of chart {chart!r} is not a mapping")
    version = item.get("version")
    if version is None or isinstance(version, bool):
        raise ChartRepositoryError(f"{source}: an entry of chart {chart!r} has no version")
    urls = item.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ChartRepositoryError(f"{source}: {chart} {version} has malformed urls")
    return ChartVersion(
        name=str(item.get("name") or chart),
        version=str(version),
        app_version=str(item.get("appVersion") or ""),
        digest=str(item.get("digest") or "").removeprefix("sha256:").lower(),
        urls=tuple(urls),
        created=str(item.get("created") or ""),
        deprecated=bool(item.get("deprecated", False)),
    )


class ChartRepository:
    """Client of one chart repository, with an on-disk cache shared by all repositories.

    Cache layout under ``cache_dir``: ``<sha256>.tgz`` per archive and
    ``index-<sha256 of repo URL>.yaml`` per repository index.
    """

    def __init__(
        self,
        url: str,
        cache_dir: Path,
        *,
        timeout: float = 30.0,
        attempts: int = 3,
        retry_wait: float = 0.2,
    ) -> None:
        if not url:
            raise ValueError("repository URL is empty")
        self.url = url
        self.cache_dir = cache_dir
        self._base = as_base_url(url)
        self._policy = DownloadPolicy(timeout=timeout, attempts=attempts, retry_wait=retry_wait)
        self._index: RepositoryIndex | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"ChartRepository({self.url!r})"

    @property
    def _index_cache(self) -> Path:
        digest = hashlib.sha256(self._base.encode()).hexdigest()
        return self.cache_dir / f"index-{digest}.yaml"

    async def index(self, *, refresh: bool = False) -> RepositoryIndex:
        """The repository index: fetched once per client (or on ``refresh``), else cached.

        When the repository is unreachable the cached copy from an earlier fetch is used.
        """
        async with self._lock:
            if self._index is not None and not refresh:
                return self._index
            source = join_url(self._base, "index.yaml")
            try:
                data = await self._read(source, MAX_INDEX_BYTES)
            except ChartRepositoryUnavailable as exc:
                cached = await asyncio.to_thread(self._read_cached_index)
                if cached is None:
                    raise ChartRepositoryUnavailable(
                        f"{exc}; and no cached index for {self.url} in {self.cache_dir}"
                    ) from exc
                log.warning("chart repository unreachable; using cached index", repo=self.url)
                self._index = RepositoryIndex.parse(cached, source=str(self._index_cache))
                return self._index
            text = data.decode("utf-8", errors="replace")
            parsed = RepositoryIndex.parse(text, source=source)
            await asyncio.to_thread(write_atomically, self._index_cache, data)
            self._index = parsed
            return parsed

    async def versions(self, chart: str) -> list[str]:
        """Versions of ``chart`` from the index, newest first."""
        return (await self.index()).versions(chart)

    async def resolve(self, chart: str, version: str | None = None) -> ChartVersion:
        """An exact version, or the newest stable one (see `RepositoryIndex.resolve`)."""
        return (await self.index()).resolve(chart, version)

    async def fetch(self, chart_version: ChartVersion) -> Path:
        """The verified archive on disk: from the cache, else downloaded, checked and cached."""
        digest = chart_version.digest
        label = f"{chart_version.name} {chart_version.version}"
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ChartRepositoryError(
                f"index entry {label} in {self.url} has no sha256 digest; refusing to install an "
                "unverifiable archive (regenerate the index with `helm repo index`)"
            )
        target = self.cache_dir / f"{digest}.tgz"
        if await asyncio.to_thread(_has_digest, target, digest):
            log.debug("chart archive from cache", chart=label, path=str(target))
            return target
        if not chart_version.urls:
            raise ChartRepositoryError(f"index entry {label} in {self.url} lists no urls")
        errors: list[str] = []
        for url in chart_version.urls:
            source = join_url(self._base, url)
            try:
                data = await self._read(source, MAX_ARCHIVE_BYTES)
            except ChartRepositoryError as exc:
                errors.append(str(exc))
                continue
            actual = hashlib.sha256(data).hexdigest()
            if actual != digest:
                raise ChartDigestMismatch(
                    f"chart archive {source} has sha256 {actual}, but the index of {self.url} "
                    f"says {digest}; the archive or the index was altered, refusing it"
                )
            await asyncio.to_thread(write_atomically, target, data)
            log.info("chart archive downloaded", chart=label, url=source, bytes=len(data))
            return target
        raise ChartRepositoryUnavailable(
            f"cannot download {label} and it is not cached: " + "; ".join(errors)
        )

    async def _read(self, url: str, limit: int) -> bytes:
        try:
            return await download(url, limit=limit, policy=self._policy)
        except SourceUnavailable as exc:
            raise ChartRepositoryUnavailable(str(exc)) from exc
        except DownloadError as exc:
            raise ChartRepositoryError(str(exc)) from exc

    def _read_cached_index(self) -> str | None:
        try:
            return self._index_cache.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None


def _has_digest(path: Path, digest: str) -> bool:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    if hashlib.sha256(data).hexdigest() == digest:
        return True
    log.warning("cached chart archive is corrupt; discarding it", path=str(path))
    path.unlink(missing_ok=True)
    return False
