"""Manifest files (sample apps, add-ons) fetched from a base URL and cached: `ManifestFetcher`
per base URL, and `ManifestLibrary`, which fetches a declared `ManifestSource` from the mirror or
from upstream.

Sample-app URLs point at a pinned upstream version, so a cached copy is as good as a fresh one:
the cache is used first, the network only when nothing is cached (or on ``refresh``). Cache
entries are keyed by URL and hold the content digest, so a corrupted file is detected and
refetched, and the same content fetched from two mirrors is stored once.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path, PurePosixPath

import structlog

from adapters.kit.declare.sources import ManifestSource
from adapters.kit.model.objects import KubeObject
from adapters.kit.model.yaml_documents import DEFAULT_MAX_BYTES, load_documents
from adapters.kit.plan.downloading import (
    DownloadError,
    DownloadPolicy,
    SourceUnavailable,
    as_base_url,
    download,
    join_url,
    write_atomically,
)

__all__ = ["ManifestFetchError", "ManifestFetcher", "ManifestLibrary", "ManifestUnavailable"]

log = structlog.get_logger(__name__)


class ManifestFetchError(RuntimeError):
    """A manifest could not be obtained; the message names the URL and the reason."""


class ManifestUnavailable(ManifestFetchError):
    """The source is unreachable and the manifest is not cached."""


class ManifestFetcher:
    """Manifest files under one base URL (http(s)://, file:// or a directory).

    Cache layout under ``cache_dir``: ``<sha256 of content>.yaml`` holds a manifest,
    ``url-<sha256 of URL>`` holds the content digest last fetched from that URL.
    """

    def __init__(
        self,
        base_url: str,
        cache_dir: Path,
        *,
        timeout: float = 30.0,
        attempts: int = 3,
        retry_wait: float = 0.2,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.base_url = base_url
        self.cache_dir = cache_dir
        self.max_bytes = max_bytes
        self._base = as_base_url(base_url)
        self._policy = DownloadPolicy(timeout=timeout, attempts=attempts, retry_wait=retry_wait)

    def __repr__(self) -> str:
        return f"ManifestFetcher({self.base_url!r})"

    def url_of(self, name: str) -> str:
        """The URL ``name`` is fetched from; names are relative paths without '..'."""
        path = PurePosixPath(name)
        if not name or path.is_absolute() or ".." in path.parts or "\\" in name or ":" in name:
            raise ValueError(f"manifest name {name!r} must be a relative path such as 'app.yaml'")
        return join_url(self._base, name)

    async def text(self, name: str, *, refresh: bool = False) -> str:
        """The manifest's text: from the cache, else fetched and cached.

        With ``refresh`` the source is asked first and the cache used only when it is
        unreachable.
        """
        url = self.url_of(name)
        pointer = self.cache_dir / f"url-{hashlib.sha256(url.encode()).hexdigest()}"
        if not refresh:
            cached = await asyncio.to_thread(self._read_cached, pointer)
            if cached is not None:
                log.debug("manifest from cache", url=url)
                return cached
        try:
            data = await download(url, limit=self.max_bytes, policy=self._policy)
        except SourceUnavailable as exc:
            cached = await asyncio.to_thread(self._read_cached, pointer)
            if cached is None:
                raise ManifestUnavailable(
                    f"cannot fetch {name} and it is not cached in {self.cache_dir}: {exc}"
                ) from exc
            log.warning("manifest source unreachable; using cached copy", url=url)
            return cached
        except DownloadError as exc:
            raise ManifestFetchError(f"cannot fetch {name}: {exc}") from exc
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestFetchError(f"{url} is not UTF-8 text: {exc}") from exc
        digest = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(self._store, pointer, digest, data)
        log.info("manifest fetched", url=url, bytes=len(data), sha256=digest)
        return text

    async def load(self, name: str, *, refresh: bool = False) -> list[KubeObject]:
        """The manifest's objects (multi-document, `kind: List` flattened, safely loaded)."""
        text = await self.text(name, refresh=refresh)
        # Parsing a few MiB of YAML takes long enough to stall other operations' events.
        return await asyncio.to_thread(
            load_documents, text, max_bytes=self.max_bytes, source=self.url_of(name)
        )

    def _store(self, pointer: Path, digest: str, data: bytes) -> None:
        write_atomically(self.cache_dir / f"{digest}.yaml", data)
        write_atomically(pointer, digest.encode("ascii"))

    def _read_cached(self, pointer: Path) -> str | None:
        try:
            digest = pointer.read_text(encoding="ascii").strip()
            data = (self.cache_dir / f"{digest}.yaml").read_bytes()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        if hashlib.sha256(data).hexdigest() != digest:
            log.warning("cached manifest is corrupt; discarding it", pointer=str(pointer))
            pointer.unlink(missing_ok=True)
            return None
        return data.decode("utf-8", errors="replace")


class ManifestLibrary:
    """Where `ManifestSource` files come from.

    With a mirror URL (laid out like the shared fixtures: ``apps/…``, ``addons/…``) each source's
    ``file`` is fetched from it; otherwise its ``upstream`` path from the declaration's upstream
    URL at the mesh version. Either URL may contain ``{version}``. Fetched files are cached.
    """

    def __init__(
        self, *, upstream_url: str, cache_dir: Path, mirror_url: str = "", timeout: float = 30.0
    ) -> None:
        self.upstream_url = upstream_url
        self.mirror_url = mirror_url
        self.cache_dir = cache_dir
        self._timeout = timeout
        self._fetchers: dict[str, ManifestFetcher] = {}

    def location(self, source: ManifestSource, version: str) -> tuple[str, str]:
        """(base URL, file name) the source is fetched from at ``version``."""
        if self.mirror_url:
            return self.mirror_url.replace("{version}", version), source.file
        return self.upstream_url.replace("{version}", version), source.upstream or source.file

    async def load(self, source: ManifestSource, version: str) -> list[KubeObject]:
        """The source's objects at ``version`` (safe YAML, `kind: List` flattened)."""
        base, name = self.location(source, version)
        fetcher = self._fetchers.get(base)
        if fetcher is None:
            fetcher = ManifestFetcher(base, self.cache_dir, timeout=self._timeout)
            self._fetchers[base] = fetcher
        return await fetcher.load(name)
