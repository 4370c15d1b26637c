"""A throwaway PostgreSQL server for the tests, and a fresh database per test.

``postgres_url`` (session) is the server's maintenance database: the URL in
MESHPLANE_TEST_POSTGRES_URL when set, else a server started from the Debian ``postgresql``
package's binaries. ``fresh_postgres_url`` (function) is a new, empty database on it, dropped
afterwards, so tests never see each other's rows. ``store_location`` runs a test once per store
backend: a SQLite file and a fresh PostgreSQL database.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

ENV_URL = "MESHPLANE_TEST_POSTGRES_URL"
_BINARIES_GLOB = "/usr/lib/postgresql/*/bin"
_SERVER_USER = "postgres"
_START_ATTEMPTS = 3


def _postgres_bindir() -> Path | None:
    """The newest installed server's bin dir, or None when the package is missing."""
    candidates = [
        Path(d) for d in sorted(Path("/").glob(_BINARIES_GLOB.lstrip("/")), key=_version_key)
    ]
    usable = [d for d in candidates if (d / "initdb").is_file() and (d / "pg_ctl").is_file()]
    return usable[-1] if usable else None


def _version_key(path: Path) -> tuple[int, ...]:
    version = path.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _LocalServer:
    """initdb + pg_ctl in a temp dir; as the ``postgres`` user when we are root."""

    def __init__(self, bindir: Path) -> None:
        self._bindir = bindir
        self._as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="meshplane-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        if self._as_root:
            # initdb refuses to run as root; the Debian package creates this user.
            entry = pwd.getpwnam(_SERVER_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self._bindir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", _SERVER_USER, "--", *command]
        return subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=60, check=False
        )

    def init(self) -> None:
        done = self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")

    def start(self) -> int:
        """Start on a free loopback port; retried because the probed port can be taken."""
        for _attempt in range(_START_ATTEMPTS):
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200"
            )
            done = self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "-o",
                options, "start",
            )  # fmt: skip
            if done.returncode == 0:
                return port
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {done.stderr or done.stdout}\n{tail}")

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def _missing_prerequisite() -> str | None:
    if _postgres_bindir() is None:
        return (
            f"PostgreSQL server binaries not found under {_BINARIES_GLOB} "
            "(install the Debian package `postgresql`; .ci/run does)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_SERVER_USER)
        except KeyError:
            return f"running as root and no `{_SERVER_USER}` user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is missing (package util-linux)"
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database, for creating test databases."""
    configured = os.environ.get(ENV_URL)
    if configured:
        yield configured
        return
    reason = _missing_prerequisite()
    if reason is not None:
        pytest.skip(reason)
    bindir = _postgres_bindir()
    assert bindir is not None
    server = _LocalServer(bindir)
    try:
        server.init()
        port = server.start()
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        server.stop()


def database_url(server_url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A new empty database for one test, dropped (connections and all) afterwards."""
    name = f"meshplane_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(postgres_url, name)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives, once per backend: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "data" / "coordinator.db")
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url
