"""Reading a file by URL — http(s)://, file:// or a plain path — bounded in size and retried.

Chart repositories and manifest sources both fetch from upstream, from a loopback test server or
from an air-gapped mirror folder; this is the one place that knows how.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
import tenacity

__all__ = [
    "DownloadError",
    "DownloadPolicy",
    "SourceUnavailable",
    "as_base_url",
    "download",
    "join_url",
    "write_atomically",
]

_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class DownloadError(RuntimeError):
    """The source answered, but not with the file (404, too large, not a file)."""


class SourceUnavailable(DownloadError):
    """The source could not be reached (after retries); a cached copy may stand in."""


class _Transient(Exception):
    """A failure worth retrying (connection refused, timeout, 5xx)."""


@dataclass(frozen=True, kw_only=True)
class DownloadPolicy:
    """How long one request may take and how often a transient failure is retried."""

    timeout: float = 30.0
    attempts: int = 3
    retry_wait: float = 0.2


def as_base_url(location: str) -> str:
    """A URL ending in '/' against which relative names resolve; paths become file:// URLs."""
    scheme = urlsplit(location).scheme
    if scheme in ("http", "https", "file"):
        return location if location.endswith("/") else location + "/"
    if scheme and len(scheme) > 1:
        raise ValueError(f"unsupported URL {location!r}: use http(s)://, file:// or a path")
    return Path(location).resolve().as_uri() + "/"


def join_url(base: str, name: str) -> str:
    """Resolve ``name`` (relative or absolute URL) against a base from `as_base_url`."""
    return urljoin(base, name)


async def download(url: str, *, limit: int, policy: DownloadPolicy) -> bytes:
    """The bytes at ``url``; at most ``limit`` bytes are accepted."""
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        path = Path(unquote(urlsplit(url).path)) if scheme == "file" else Path(url)
        try:
            return await asyncio.to_thread(_read_local, path, limit)
        except FileNotFoundError as exc:
            raise SourceUnavailable(f"{path} does not exist") from exc
        except IsADirectoryError as exc:
            raise DownloadError(f"{path} is a directory, not a file") from exc
        except OSError as exc:
            raise SourceUnavailable(f"cannot read {path}: {exc}") from exc
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(max(1, policy.attempts)),
        wait=tenacity.wait_exponential(multiplier=policy.retry_wait, max=2.0),
        retry=tenacity.retry_if_exception_type(_Transient),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await _http_get(url, limit, policy)
    except _Transient as exc:
        raise SourceUnavailable(
            f"{url} unreachable after {policy.attempts} attempts: {exc}"
        ) from exc
    raise AssertionError("unreachable: tenacity either returns or raises")


async def _http_get(url: str, limit: int, policy: DownloadPolicy) -> bytes:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=policy.timeout)) as session,
            session.get(url) as response,
        ):
            if response.status in _TRANSIENT_STATUS:
                raise _Transient(f"HTTP {response.status} from {url}")
            if response.status != 200:
                raise DownloadError(f"HTTP {response.status} from {url}")
            if response.content_length is not None and response.content_length > limit:
                raise DownloadError(f"{url} is larger than the limit of {limit} bytes")
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > limit:
                    raise DownloadError(f"{url} is larger than the limit of {limit} bytes")
            return bytes(body)
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc


def _read_local(path: Path, limit: int) -> bytes:
    size = path.stat().st_size
    if size > limit:
        raise DownloadError(f"{path} is larger than the limit of {limit} bytes")
    return path.read_bytes()


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
