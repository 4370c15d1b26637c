"""``--token-auth-file``: static bearer tokens in kube-apiserver's CSV format.

One line per token: ``token,user,uid,"group1,group2"`` (the groups column is optional; lines
starting with ``#`` and blank lines are skipped). The file is read again whenever its size,
modification or change time, mode or inode changes; a file that no longer parses, or that
became readable by other users, is refused and the previous tokens stay in force (logged at
ERROR). A presented token's SHA-256 digest is compared with every entry's digest by
``hmac.compare_digest``, so the time taken does not depend on how much of a guessed token is
right (it grows with the number of tokens in the file, which is small).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import os
import stat
from pathlib import Path

import structlog

from coordinator.server.identity.subjects import Subject

__all__ = ["TokenFile", "TokenFileError", "parse_token_file"]

_log = structlog.get_logger(__name__)

_MAX_FILE_BYTES = 4 * 1024 * 1024


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file and line."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def parse_token_file(text: str, *, source: str = "token file") -> dict[bytes, Subject]:
    """Subjects by token digest; raises TokenFileError naming the line of the first problem."""
    entries: dict[bytes, Subject] = {}
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    for number, row in enumerate(csv.reader(io.StringIO("\n".join(lines))), start=1):
        if len(row) < 3:
            raise TokenFileError(
                f'{source} entry {number}: expected token,user,uid[,"group1,group2"], '
                f"got {len(row)} column(s)"
            )
        token, user, uid = (cell.strip() for cell in row[:3])
        if not token or not user:
            raise TokenFileError(f"{source} entry {number}: token and user must not be empty")
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        digest = _digest(token)
        if digest in entries:
            raise TokenFileError(f"{source} entry {number}: the token of an earlier entry again")
        entries[digest] = Subject(user=user, uid=uid, groups=groups, authenticated_by="token-file")
    return entries


def _check_private(path: Path, mode: int) -> None:
    if mode & stat.S_IROTH:
        raise TokenFileError(
            f"{path} is readable by every user (mode {stat.S_IMODE(mode):04o}); "
            f"run chmod 600 {path} (or 640 with a group only the coordinator is in)"
        )


class TokenFile:
    """Authenticates bearer tokens against one CSV file, re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[bytes, Subject] = {}
        self._signature: tuple[int, ...] | None = None
        self._reload(initial=True)

    def _stat(self) -> os.stat_result:
        return os.stat(self.path)

    def _reload(self, *, initial: bool = False) -> None:
        """Read the file when it changed; at start-up every problem is fatal."""
        try:
            info = self._stat()
        except OSError as exc:
            if initial:
                raise TokenFileError(f"cannot read --token-auth-file {self.path}: {exc}") from exc
            _log.error("auth.token_file_unreadable", path=str(self.path), error=str(exc))
            return
        signature = (info.st_mtime_ns, info.st_ctime_ns, info.st_size, info.st_ino, info.st_mode)
        if signature == self._signature:
            return
        self._signature = signature
        try:
            _check_private(self.path, info.st_mode)
            if info.st_size > _MAX_FILE_BYTES:
                raise TokenFileError(f"{self.path} is larger than {_MAX_FILE_BYTES} bytes")
            text = self.path.read_text(encoding="utf-8")
            entries = parse_token_file(text, source=str(self.path))
        except (OSError, UnicodeDecodeError, TokenFileError) as exc:
            if initial:
                raise TokenFileError(str(exc)) from exc
            _log.error(
                "auth.token_file_refused", path=str(self.path), error=str(exc), kept="previous"
            )
            return
        self._entries = entries
        _log.info(
            "auth.token_file_loaded", path=str(self.path), tokens=len(entries), initial=initial
        )

    def authenticate(self, token: str) -> Subject | None:
        """The subject the token belongs to, or None (the file is re-read first if it changed)."""
        self._reload()
        digest = _digest(token)
        found: Subject | None = None
        for candidate, subject in self._entries.items():
            if hmac.compare_digest(candidate, digest):
                found = subject
        return found
