"""Errors in the CLI's words: API field names become flags, and near misses get a suggestion.

The coordinator and adapters name request fields (``parameters.delay-ms``, ``mesh_version``,
``ApplyOperationRequest.timeout``) because any client may call them. A person at the CLI typed
flags, so their words are swapped in: ``--param delay-ms``, ``--version``, ``--timeout``. When a
mesh or an operation is unknown, the CLI asks what exists and suggests the closest names
(``did you mean 'istio'?``), as git and kubectl do.
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

from coordinator.client.channel import Command
from meshplane.coordinator.v1 import coordinator_pb2 as cpb

__all__ = ["HintedError", "in_cli_words", "suggest", "with_hints"]

_FLAG_WORDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"\(?\b(?:ApplyOperationRequest|request)\.timeout\b\)?", "--timeout"),
        (r"\b(?:send )?parameters\.([A-Za-z0-9_.-]+)=", r"--param \1="),
        (r"\bparameters\.([A-Za-z0-9_.-]+)", r"--param \1"),
        (r"\bmesh_version\b", "--version"),
        (r"\bcustom_body\b", "-f FILE"),
        (r"\boperation_id\b", "--operation-id"),
        (r"\(see ListOperations\)|\bListOperations\b", "(see `meshplane ops`)"),
        (r"\bListMeshVersions\b", "`meshplane versions`"),
        (r"\bListOperationHistory\b", "`meshplane history`"),
    )
)


def in_cli_words(message: str) -> str:
    """``message`` with the API's field names replaced by the CLI's flags."""
    for pattern, replacement in _FLAG_WORDS:
        message = pattern.sub(replacement, message)
    return message


def suggest(word: str, choices: Sequence[str]) -> str:
    """``"did you mean 'istio'?"`` for the closest choices, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=2, cutoff=0.6)
    if not close:
        return ""
    return "did you mean " + " or ".join(repr(choice) for choice in close) + "?"


class HintedError(grpc.RpcError):  # type: ignore[misc]
    """An RPC error whose details are in the CLI's words, with a suggestion when there is one."""

    def __init__(self, error: Any, details: str) -> None:
        super().__init__(details)
        self._error = error
        self._details = details

    def code(self) -> Any:
        return self._error.code()

    def details(self) -> str:
        return self._details


def with_hints(command: Command) -> Command:
    """``command``, with its RPC errors rephrased for the CLI (see the module docstring)."""

    async def hinted(stub: Any, args: argparse.Namespace) -> int:
        try:
            return await command(stub, args)
        except grpc.aio.AioRpcError as exc:
            details = in_cli_words(str(exc.details() or ""))
            hint = await _suggestion(stub, args, exc)
            raise HintedError(exc, f"{details}; {hint}" if hint else details) from None

    return hinted


async def _suggestion(stub: Any, args: argparse.Namespace, error: Any) -> str:
    """Ask the coordinator what exists, and suggest the closest mesh or operation."""
    details = str(error.details() or "")
    mesh = str(getattr(args, "mesh", "") or "")
    try:
        if error.code() == grpc.StatusCode.NOT_FOUND and mesh and "unknown mesh" in details:
            listed = await stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
            return suggest(mesh, [adapter.mesh for adapter in listed.adapters])
        operation = str(getattr(args, "operation", "") or "")
        if operation and "catalogue" in details:
            catalogue = await stub.ListOperations(cpb.ListOperationsRequest(mesh=mesh), timeout=5)
            ids = [op.id for entry in catalogue.catalogues for op in entry.operations]
            return suggest(operation, ids)
    except grpc.RpcError:
        return ""
    return ""
