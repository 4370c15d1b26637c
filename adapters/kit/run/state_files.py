"""The adapter's state directory on disk: atomic file writes and JSON forms of kit records.

The journal and the event log survive a restart (or a kill) through these files, so the JSON
shapes here are a storage format: fields are only added, and readers accept missing ones.
Credentials never reach disk: kubeconfig contents are not part of `OperationRecord`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters.kit.model.records import (
    ClusterResult,
    ErrorDetail,
    OperationRecord,
    OperationState,
)

__all__ = [
    "StateDirInUse",
    "StateDirLock",
    "atomic_write_text",
    "error_from_json",
    "error_to_json",
    "record_from_json",
    "record_to_json",
    "time_from_json",
    "time_to_json",
]

JsonObject = dict[str, Any]

LOCK_FILE = "adapter.lock"


class StateDirInUse(OSError):
    """Another live process holds the state directory."""


class StateDirLock:
    """An exclusive lock on a state directory, so two adapters never interleave their files.

    ``flock`` is released by the kernel when the holder dies, so a killed adapter never leaves
    a stale lock behind for its replacement.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / LOCK_FILE
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            self._fd = None
            raise StateDirInUse(
                f"state directory {directory} is in use by another adapter (pid {holder}); "
                "give each adapter its own --state-dir"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Give the directory up (idempotent)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers (and restarts) never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def time_to_json(value: datetime | None) -> str | None:
    """ISO-8601 with offset (datetimes in the kit are timezone-aware UTC)."""
    return None if value is None else value.isoformat()


def time_from_json(value: object) -> datetime | None:
    """Inverse of `time_to_json`; anything that is not a string reads as absent."""
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def error_to_json(error: ErrorDetail | None) -> JsonObject | None:
    """Plain dict form of an error detail."""
    if error is None:
        return None
    return {
        "code": error.code,
        "message": error.message,
        "probable_cause": error.probable_cause,
        "suggested_remediation": error.suggested_remediation,
    }


def error_from_json(data: object) -> ErrorDetail | None:
    """Inverse of `error_to_json`."""
    if not isinstance(data, Mapping):
        return None
    return ErrorDetail(
        code=str(data.get("code", "")),
        message=str(data.get("message", "")),
        probable_cause=str(data.get("probable_cause", "")),
        suggested_remediation=str(data.get("suggested_remediation", "")),
    )


def _result_to_json(result: ClusterResult) -> JsonObject:
    return {
        "cluster": result.cluster,
        "state": result.state.value,
        "error": error_to_json(result.error),
        "objects_applied": result.objects_applied,
        "objects_deleted": result.objects_deleted,
        "objects_unchanged": result.objects_unchanged,
        "summary": result.summary,
    }


def _result_from_json(data: Mapping[str, Any]) -> ClusterResult:
    return ClusterResult(
        cluster=str(data["cluster"]),
        state=OperationState(data["state"]),
        error=error_from_json(data.get("error")),
        objects_applied=int(data.get("objects_applied", 0)),
        objects_deleted=int(data.get("objects_deleted", 0)),
        objects_unchanged=int(data.get("objects_unchanged", 0)),
        summary=str(data.get("summary", "")),
    )


def record_to_json(record: OperationRecord) -> JsonObject:
    """Plain dict form of an operation record (the journal's file format)."""
    return {
        "operation_id": record.operation_id,
        "operation": record.operation,
        "mesh": record.mesh,
        "mesh_version": record.mesh_version,
        "namespace": record.namespace,
        "delete": record.delete,
        "parameters": dict(record.parameters),
        "username": record.username,
        "state": record.state.value,
        "clusters": list(record.clusters),
        "cluster_results": [_result_to_json(r) for r in record.cluster_results],
        "error": error_to_json(record.error),
        "create_time": time_to_json(record.create_time),
        "start_time": time_to_json(record.start_time),
        "end_time": time_to_json(record.end_time),
        "attempt": record.attempt,
        "custom_body": record.custom_body,
        "timeout_seconds": record.timeout_seconds,
    }


def record_from_json(data: Mapping[str, Any]) -> OperationRecord:
    """Inverse of `record_to_json`; raises KeyError/ValueError on a record that is not one."""
    create_time = time_from_json(data["create_time"])
    if create_time is None:
        raise ValueError("operation record without create_time")
    timeout = data.get("timeout_seconds")
    return OperationRecord(
        operation_id=str(data["operation_id"]),
        operation=str(data["operation"]),
        mesh=str(data["mesh"]),
        mesh_version=str(data.get("mesh_version", "")),
        namespace=str(data.get("namespace", "")),
        delete=bool(data.get("delete", False)),
        parameters={str(k): str(v) for k, v in dict(data.get("parameters", {})).items()},
        username=str(data.get("username", "")),
        state=OperationState(data["state"]),
        clusters=tuple(str(c) for c in data.get("clusters", ())),
        cluster_results=tuple(_result_from_json(r) for r in data.get("cluster_results", ())),
        error=error_from_json(data.get("error")),
        create_time=create_time,
        start_time=time_from_json(data.get("start_time")),
        end_time=time_from_json(data.get("end_time")),
        attempt=int(data.get("attempt", 0)),
        custom_body=str(data.get("custom_body", "")),
        timeout_seconds=None if timeout is None else float(timeout),
    )
